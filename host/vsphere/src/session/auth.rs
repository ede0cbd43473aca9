//! Whose session it is: the credentials it was opened with (fixed for the client's life:
//! new credentials get a client of their own from the pool), whether the server rejected
//! them at a re-login (then they are not sent again, so a directory account is not locked
//! out), and the lock that lets only one login of a client run at a time.

use std::sync::Mutex;

use super::config::Credentials;

/// The credentials of one client and the rules for sending them.
pub(crate) struct Auth {
    state: Mutex<State>,
    /// Held while a (re-)login runs, whichever protocol it is for.
    login: tokio::sync::Mutex<()>,
}

struct State {
    creds: Credentials,
    /// Set when a login with `creds` was rejected.
    rejected: bool,
}

impl Auth {
    pub fn new(creds: Credentials) -> Auth {
        Auth { state: Mutex::new(State { creds, rejected: false }), login: tokio::sync::Mutex::new(()) }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn credentials(&self) -> Credentials {
        self.state().creds.clone()
    }

    pub fn username(&self) -> String {
        self.state().creds.username.clone()
    }

    /// The password, for redaction.
    pub fn password(&self) -> String {
        self.state().creds.password.expose().to_string()
    }

    /// True when the server rejected the current credentials.
    pub fn rejected(&self) -> bool {
        self.state().rejected
    }

    /// The server rejected the credentials: send them no more.
    pub fn mark_rejected(&self) {
        self.state().rejected = true;
    }

    /// Wait for any other login of this client to finish; hold the guard while logging in.
    pub async fn single_flight(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.login.lock().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejection_sticks() {
        let a = Auth::new(Credentials::new("u", "pw"));
        assert!(!a.rejected());
        a.mark_rejected();
        assert!(a.rejected());
        assert_eq!((a.username(), a.password()), ("u".to_string(), "pw".to_string()));
    }
}
