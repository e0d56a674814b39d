//! API tokens: made (shown once), listed, revoked, and checked on every request the
//! server takes. The journal keeps each token's hash, never the token.

use tether_types::access::{token_hash, Role, TokenRecord, TOKEN_PREFIX};

use crate::{App, AppError};

/// A token to make.
#[derive(Clone, Debug)]
pub struct NewToken {
    /// Its unique name.
    pub name: String,
    /// The identity it acts as.
    pub identity: String,
    /// What it may do.
    pub roles: Vec<Role>,
    /// When it stops working, if it does (microseconds since the Unix epoch).
    pub expires_us: Option<u64>,
}

/// Why a request's token was not accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refused {
    /// No token is known by that value.
    Unknown,
    /// The token was revoked or has expired.
    Unusable(&'static str),
}

impl App {
    /// Makes a token: the token itself (to be shown once) and what the journal keeps.
    pub async fn create_token(&self, new: NewToken) -> Result<(String, TokenRecord), AppError> {
        if new.name.is_empty() || new.name.len() > 64 || !new.name.chars().all(|c| c.is_ascii_graphic()) {
            return Err(AppError::BadInput(format!(
                "token name `{}`: use 1 to 64 visible ASCII characters, no spaces",
                new.name.escape_debug()
            )));
        }
        if new.identity.is_empty() || new.identity.chars().any(char::is_control) {
            return Err(AppError::BadInput("the token's identity must be a non-empty name".into()));
        }
        if new.roles.is_empty() {
            return Err(AppError::BadInput("a token needs at least one role".into()));
        }
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret)
            .map_err(|e| AppError::Corrupt(format!("the system gave no random bytes for a token: {e}")))?;
        let token = format!("{TOKEN_PREFIX}{}", hex::encode(secret));
        let mut roles = new.roles;
        roles.sort();
        roles.dedup();
        let record = TokenRecord {
            name: new.name,
            identity: new.identity,
            roles,
            created_us: now_us(),
            expires_us: new.expires_us,
            revoked_us: None,
        };
        self.store.add_token(&record, &token_hash(&token)).await?;
        Ok((token, record))
    }

    /// Every token, revoked ones too.
    pub async fn tokens(&self) -> Result<Vec<TokenRecord>, AppError> {
        Ok(self.store.tokens().await?)
    }

    /// Revokes a token by name: it stops working at once.
    pub async fn revoke_token(&self, name: &str) -> Result<TokenRecord, AppError> {
        Ok(self.store.revoke_token(name, now_us()).await?)
    }

    /// The token a request presents, if it may be used now.
    pub async fn authenticate(&self, token: &str) -> Result<Result<TokenRecord, Refused>, AppError> {
        let Some(record) = self.store.token_by_hash(&token_hash(token)).await? else {
            return Ok(Err(Refused::Unknown));
        };
        Ok(record.usable(now_us()).map(|()| record).map_err(Refused::Unusable))
    }
}

fn now_us() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}
