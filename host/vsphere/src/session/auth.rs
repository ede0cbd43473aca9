//! Whose session it is: the credentials in use, whether the server rejected them (then
//! they are not sent again until they change, so a directory account is not locked
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

    /// Use `creds` from now on; different credentials clear the rejected mark.
    pub fn update(&self, creds: &Credentials) {
        let mut s = self.state();
        if s.creds != *creds {
            s.creds = creds.clone();
            s.rejected = false;
        }
    }

    /// True when the server rejected the current credentials.
    pub fn rejected(&self) -> bool {
        self.state().rejected
    }

    /// The server rejected `creds`: unless they were replaced meanwhile, send them no more.
    pub fn mark_rejected(&self, creds: &Credentials) {
        let mut s = self.state();
        if s.creds == *creds {
            s.rejected = true;
        }
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
    fn rejection_sticks_to_the_rejected_credentials() {
        let a = Auth::new(Credentials::new("u", "old"));
        let old = a.credentials();
        a.mark_rejected(&old);
        assert!(a.rejected());
        // The same credentials again: still rejected.
        a.update(&Credentials::new("u", "old"));
        assert!(a.rejected());
        // New ones clear the mark; a late rejection of the old ones does not set it again.
        a.update(&Credentials::new("u", "new"));
        assert!(!a.rejected());
        a.mark_rejected(&old);
        assert!(!a.rejected());
        assert_eq!(a.password(), "new");
        assert_eq!(a.username(), "u");
    }
}
