fn main() {
    eprintln!("vsm-operator: not yet wired");
}
