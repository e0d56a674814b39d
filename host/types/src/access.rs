//! Who may do what through the server: API tokens, each bound to an identity and roles.
//!
//! Roles are what a token may do; the identity is who it acts as (a decision through the
//! server is made by the token's identity, and the run's policy still decides which
//! identities may decide which gate). A token is shown once when made; the journal keeps
//! only its SHA-256, so a copy of the database holds no usable token.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Read runs, events, approvals, gates, stats, plugins.
    Viewer,
    /// Start runs (and read).
    Runner,
    /// Decide approval requests (and read).
    Approver,
    /// Cancel and resume runs, deploy plugins and register workflows (and everything a
    /// runner and an approver may).
    Operator,
    /// Everything, including making and revoking tokens.
    Admin,
}

impl Role {
    /// Every role, weakest first.
    pub const ALL: [Role; 5] = [Role::Viewer, Role::Runner, Role::Approver, Role::Operator, Role::Admin];

    /// The role by name.
    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == name)
    }

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Runner => "runner",
            Role::Approver => "approver",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// Whether holding `self` allows what `needed` allows. Every role reads; an
    /// operator runs and decides too; an admin may do everything.
    pub fn allows(self, needed: Role) -> bool {
        match (self, needed) {
            (Role::Admin, _) | (_, Role::Viewer) => true,
            (Role::Operator, Role::Runner | Role::Approver | Role::Operator) => true,
            (held, needed) => held == needed,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether any of `roles` allows `needed`.
pub fn allowed(roles: &[Role], needed: Role) -> bool {
    roles.iter().any(|r| r.allows(needed))
}

/// An API token as the journal keeps it: never the token itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Its name, unique: what `list` shows and `revoke` takes.
    pub name: String,
    /// The identity it acts as.
    pub identity: String,
    /// What it may do.
    pub roles: Vec<Role>,
    /// When it was made (microseconds since the Unix epoch).
    pub created_us: u64,
    /// When it stops working, if it does.
    pub expires_us: Option<u64>,
    /// When it was revoked, if it was.
    pub revoked_us: Option<u64>,
}

impl TokenRecord {
    /// Whether it may be used at `now_us`.
    pub fn usable(&self, now_us: u64) -> Result<(), &'static str> {
        if self.revoked_us.is_some() {
            return Err("revoked");
        }
        if self.expires_us.is_some_and(|e| e <= now_us) {
            return Err("expired");
        }
        Ok(())
    }
}

/// What the journal keeps of a token: its SHA-256, hex. Tokens are 256 random bits, so
/// a fast hash is enough (no password stretching needed).
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The prefix every token starts with, so a leaked one is recognizable.
pub const TOKEN_PREFIX: &str = "tether_";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_allow_what_they_name_and_operators_and_admins_more() {
        use Role::*;
        let table = [
            (Viewer, [true, false, false, false, false]),
            (Runner, [true, true, false, false, false]),
            (Approver, [true, false, true, false, false]),
            (Operator, [true, true, true, true, false]),
            (Admin, [true, true, true, true, true]),
        ];
        for (held, row) in table {
            for (needed, expected) in Role::ALL.into_iter().zip(row) {
                assert_eq!(held.allows(needed), expected, "{held} -> {needed}");
            }
        }
        assert!(allowed(&[Runner, Approver], Approver));
        assert!(!allowed(&[], Viewer));
        assert_eq!(Role::parse("operator"), Some(Operator));
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn a_revoked_or_expired_token_is_not_usable() {
        let mut t = TokenRecord {
            name: "ci".into(),
            identity: "alice".into(),
            roles: vec![Role::Viewer],
            created_us: 1,
            expires_us: Some(100),
            revoked_us: None,
        };
        assert_eq!(t.usable(99), Ok(()));
        assert_eq!(t.usable(100), Err("expired"));
        t.expires_us = None;
        t.revoked_us = Some(5);
        assert_eq!(t.usable(99), Err("revoked"));
        assert_ne!(token_hash("tether_a"), token_hash("tether_b"));
        assert_eq!(token_hash("x").len(), 64);
    }
}
