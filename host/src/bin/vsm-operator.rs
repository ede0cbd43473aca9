fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("crd") {
        print!("{}", vsm_host::api::crd_yaml());
        return;
    }
    eprintln!("usage: vsm-operator crd");
    std::process::exit(2);
}
