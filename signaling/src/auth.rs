//! Optional authentication: an HS256 JSON Web Token (RFC 7519) per connection.
//!
//! With [`Config::jwt_secret`](crate::Config::jwt_secret) set, a client
//! connects with `ws://HOST:PORT/ws?token=<JWT>`. The token is checked when
//! the client sends `join`: it must be signed with HS256 and the server's
//! secret, carry an `exp` claim (seconds since the Unix epoch) that has not
//! passed (no leeway), an `nbf` claim (if present) that has passed, and a
//! `room` claim equal to the room being joined. Otherwise the client gets
//! `error {code: "unauthorized"}` and joins nothing; its socket stays open.
//! (A query that cannot be read, such as `token` given twice, is refused
//! with HTTP 400 before the upgrade.)
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use rtc_signaling::auth::{JwtSecret, encode_token};
//!
//! let secret = JwtSecret::new("s3cret")?;
//! let token = encode_token(&secret, "r1", SystemTime::now() + Duration::from_secs(600))?;
//! let url = format!("ws://127.0.0.1:8080/ws?token={token}");
//! # let _ = url;
//! # Ok::<(), rtc_signaling::auth::AuthError>(())
//! ```

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// The shared HS256 secret: never empty. Its `Debug` output never shows
/// the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct JwtSecret(String);

impl JwtSecret {
    /// Wraps a secret (its UTF-8 bytes are the HMAC key); fails if it is
    /// empty.
    pub fn new(secret: impl Into<String>) -> Result<JwtSecret, AuthError> {
        let secret = secret.into();
        if secret.is_empty() {
            return Err(AuthError::EmptySecret);
        }
        Ok(JwtSecret(secret))
    }

    fn bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for JwtSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JwtSecret(<redacted>)")
    }
}

/// The claims the server reads from a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The one room the token admits to.
    pub room: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
}

/// Why a token was refused (the `message` of an `unauthorized` error).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// [`JwtSecret::new`] was given an empty secret.
    #[error("the JWT secret must not be empty")]
    EmptySecret,
    /// No `?token=` on the WebSocket URL.
    #[error("a token is required: connect to the WebSocket URL with ?token=<JWT>")]
    Missing,
    /// Not a valid HS256 token for this server's secret, expired, or
    /// without the required claims.
    #[error("invalid token: {0}")]
    Invalid(#[source] jsonwebtoken::errors::Error),
    /// A valid token for another room.
    #[error("the token is for room {token_room:?}, not {room:?}")]
    WrongRoom {
        /// The token's `room` claim.
        token_room: String,
        /// The room the client tried to join.
        room: String,
    },
}

/// Signs a token for `room`, valid until `expires` (whole seconds).
pub fn encode_token(
    secret: &JwtSecret,
    room: &str,
    expires: SystemTime,
) -> Result<String, AuthError> {
    let exp = expires
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let claims = Claims {
        room: room.to_owned(),
        exp,
    };
    let key = EncodingKey::from_secret(secret.bytes()).map_err(AuthError::Invalid)?;
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).map_err(AuthError::Invalid)
}

/// Checks tokens against one secret.
pub(crate) struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Verifier { .. }")
    }
}

impl Verifier {
    pub(crate) fn new(secret: &JwtSecret) -> Verifier {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp"]);
        Verifier {
            // Fails only for an empty secret, which JwtSecret rules out.
            key: DecodingKey::from_secret(secret.bytes()).expect("a JwtSecret is never empty"),
            validation,
        }
    }

    /// Admits `token` to `room` or says why not.
    pub(crate) fn check(&self, token: Option<&str>, room: &str) -> Result<(), AuthError> {
        let token = token.ok_or(AuthError::Missing)?;
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(AuthError::Invalid)?;
        if data.claims.room != room {
            return Err(AuthError::WrongRoom {
                token_room: data.claims.room,
                room: room.to_owned(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn in_10_min() -> SystemTime {
        SystemTime::now() + Duration::from_secs(600)
    }

    #[test]
    fn valid_token_admits_its_room_only() {
        let secret = JwtSecret::new("k").expect("secret");
        let verifier = Verifier::new(&secret);
        let token = encode_token(&secret, "r1", in_10_min()).expect("encode");
        verifier.check(Some(&token), "r1").expect("valid");
        assert!(matches!(
            verifier.check(Some(&token), "r2"),
            Err(AuthError::WrongRoom { token_room, room }) if token_room == "r1" && room == "r2"
        ));
    }

    #[test]
    fn missing_wrong_secret_expired_and_garbage_are_refused() {
        let secret = JwtSecret::new("k").expect("secret");
        let verifier = Verifier::new(&secret);
        assert!(matches!(verifier.check(None, "r"), Err(AuthError::Missing)));
        let other = encode_token(&JwtSecret::new("other").expect("secret"), "r", in_10_min())
            .expect("encode");
        let err = verifier.check(Some(&other), "r").expect_err("wrong secret");
        assert!(err.to_string().contains("InvalidSignature"), "{err}");
        let expired =
            encode_token(&secret, "r", SystemTime::now() - Duration::from_secs(2)).expect("encode");
        let err = verifier.check(Some(&expired), "r").expect_err("expired");
        assert!(err.to_string().contains("ExpiredSignature"), "{err}");
        assert!(matches!(
            verifier.check(Some("not.a.jwt"), "r"),
            Err(AuthError::Invalid(_))
        ));
    }

    #[test]
    fn exp_is_required_and_other_algorithms_are_refused() {
        let secret = JwtSecret::new("k").expect("secret");
        let verifier = Verifier::new(&secret);
        let key = EncodingKey::from_secret(b"k").expect("key");
        #[derive(Serialize)]
        struct NoExp {
            room: String,
        }
        let no_exp = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &NoExp { room: "r".into() },
            &key,
        )
        .expect("encode");
        assert!(matches!(
            verifier.check(Some(&no_exp), "r"),
            Err(AuthError::Invalid(_))
        ));
        let claims = Claims {
            room: "r".into(),
            exp: in_10_min()
                .duration_since(UNIX_EPOCH)
                .expect("after epoch")
                .as_secs(),
        };
        let hs512 =
            jsonwebtoken::encode(&Header::new(Algorithm::HS512), &claims, &key).expect("encode");
        assert!(matches!(
            verifier.check(Some(&hs512), "r"),
            Err(AuthError::Invalid(_))
        ));
    }

    #[test]
    fn empty_secret_is_refused() {
        assert!(matches!(JwtSecret::new(""), Err(AuthError::EmptySecret)));
    }

    #[test]
    fn debug_hides_the_secret() {
        assert!(!format!("{:?}", JwtSecret::new("hunter2").expect("secret")).contains("hunter2"));
    }
}
