//! Authentication: mysql_native_password scrambles (MySQL protocol) and plain passwords (gRPC),
//! both checked against the stored `SHA1(SHA1(password))`. Hashing happens on the FE that
//! receives a password, so neither the log nor the state machine ever holds plaintext. Every
//! login goes through the FE's `login_throttle`.

use crate::error::ApiError;
use crate::login_throttle::Admission;
use crate::node::FeNodeHandle;
use rand::Rng;
use roster_membership::model::users::{PasswordHash, ROOT};
use sha1::{Digest, Sha1};
use std::net::IpAddr;
use tokio::time::Instant;

fn sha1(parts: &[&[u8]]) -> [u8; 20] {
    let mut h = Sha1::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// What the state machine stores for a password; `None` for the empty password.
pub fn hash_password(password: &str) -> PasswordHash {
    if password.is_empty() {
        None
    } else {
        Some(sha1(&[&sha1(&[password.as_bytes()])]))
    }
}

/// A fresh 20-byte scramble for one connection: printable, without NUL or '$' (which some
/// clients treat specially).
pub fn random_salt() -> [u8; 20] {
    let mut rng = rand::rng();
    let mut s = [0u8; 20];
    for b in &mut s {
        loop {
            let c: u8 = rng.random_range(0x21..0x7f);
            if c != b'$' {
                *b = c;
                break;
            }
        }
    }
    s
}

/// The client's side of mysql_native_password: `SHA1(pw) XOR SHA1(salt + SHA1(SHA1(pw)))`.
pub fn scramble(salt: &[u8], password: &str) -> Vec<u8> {
    if password.is_empty() {
        return Vec::new();
    }
    let stage1 = sha1(&[password.as_bytes()]);
    let stage2 = sha1(&[&stage1]);
    let mix = sha1(&[salt, &stage2]);
    stage1.iter().zip(mix.iter()).map(|(a, b)| a ^ b).collect()
}

/// Constant-time equality, so the comparison leaks nothing through timing.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Check a mysql_native_password response against the stored hash.
pub fn verify_scramble(stored: &PasswordHash, salt: &[u8], token: &[u8]) -> bool {
    match stored {
        None => token.is_empty(),
        Some(stage2) => {
            if token.len() != 20 {
                return false;
            }
            let mix = sha1(&[salt, stage2]);
            let stage1: Vec<u8> = token.iter().zip(mix.iter()).map(|(a, b)| a ^ b).collect();
            ct_eq(&sha1(&[&stage1]), stage2)
        }
    }
}

/// Check a plain password (gRPC) against the stored hash.
pub fn verify_password(stored: &PasswordHash, password: &str) -> bool {
    match (stored, hash_password(password)) {
        (None, None) => true,
        (Some(s), Some(p)) => ct_eq(s, &p),
        _ => false,
    }
}

/// The error MySQL gives for a failed login (Doris too).
pub fn access_denied(user: &str, with_password: bool) -> ApiError {
    ApiError::AccessDenied(format!(
        "Access denied for user '{user}' (using password: {})",
        if with_password { "YES" } else { "NO" }
    ))
}

/// Log lines about failed logins: at most one a second, whatever the attack's rate.
static FAILURE_LOG: roster_transport::ratelog::RateLimit<bool> =
    roster_transport::ratelog::RateLimit::new(std::time::Duration::from_secs(1));

/// A login from `source`, throttled (`login_throttle`): wait for the source's slot or be
/// refused without a check, then check the credentials and tell the throttle the verdict.
pub async fn login(
    fe: &FeNodeHandle,
    source: IpAddr,
    user: &str,
    with_password: bool,
    check: impl Fn(&PasswordHash) -> bool,
) -> Result<(), ApiError> {
    let throttle = fe.login_throttle();
    match throttle.admit(source, user, Instant::now()) {
        Admission::Refused { retry_in, failures } => {
            if let Some(suppressed) = FAILURE_LOG.check(true) {
                tracing::warn!(
                    %source, user, failures, suppressed,
                    "login refused unchecked: {failures} failed logins in a row from this source; next check in {retry_in:?} ({suppressed} more refusals and failures not logged since the last line)"
                );
            }
            return Err(ApiError::Throttled(format!(
                "Host '{source}' is blocked for {:.1} s after {failures} failed logins in a row (login throttling)",
                retry_in.as_secs_f64()
            )));
        }
        Admission::CheckAfter(wait) if !wait.is_zero() => tokio::time::sleep(wait).await,
        Admission::CheckAfter(_) => {}
    }
    let res = check_credentials(fe, user, with_password, check).await;
    match &res {
        Ok(()) => throttle.succeeded(source, user),
        Err(ApiError::AccessDenied(_)) => {
            throttle.failed(user, Instant::now());
            if let Some(suppressed) = FAILURE_LOG.check(true) {
                tracing::warn!(
                    %source, user, suppressed,
                    "login failed: wrong password or unknown user ({suppressed} more refusals and failures not logged since the last line)"
                );
            }
        }
        Err(_) => throttle.abandoned(source),
    }
    res
}

/// Find `user` and check its credentials with `check`. A user created on another FE a moment
/// ago may not be applied here yet, so a miss is retried after a read barrier.
async fn check_credentials(
    fe: &FeNodeHandle,
    user: &str,
    with_password: bool,
    check: impl Fn(&PasswordHash) -> bool,
) -> Result<(), ApiError> {
    let lookup = |fe: &FeNodeHandle| {
        fe.store()
            .read(|s, _| s.users.get(&user.to_string()).map(|u| u.password))
    };
    let stored = match lookup(fe) {
        Some(p) => Some(p),
        None => {
            fe.linearize().await?;
            lookup(fe)
        }
    };
    match stored {
        Some(p) if check(&p) => Ok(()),
        Some(_) => Err(access_denied(user, with_password)),
        None if user == ROOT => Err(ApiError::Unavailable(
            "the cluster is still creating its root user".into(),
        )),
        None => Err(access_denied(user, with_password)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scramble_round_trip_and_replay() {
        let stored = hash_password("s3cret");
        let salt1 = random_salt();
        let salt2 = random_salt();
        assert_ne!(salt1, salt2, "salts are random per connection");
        let token = scramble(&salt1, "s3cret");
        assert!(verify_scramble(&stored, &salt1, &token));
        assert!(
            !verify_scramble(&stored, &salt2, &token),
            "a captured response is useless under another salt"
        );
        assert!(!verify_scramble(
            &stored,
            &salt1,
            &scramble(&salt1, "wrong")
        ));
        assert!(!verify_scramble(&stored, &salt1, &[]));
        assert!(verify_scramble(&None, &salt1, &[]));
        assert!(!verify_scramble(&None, &salt1, &token));
        assert!(salt1.iter().all(|b| *b != 0 && *b != b'$'));
    }

    #[test]
    fn plain_passwords() {
        let stored = hash_password("pw");
        assert!(verify_password(&stored, "pw"));
        assert!(!verify_password(&stored, "pW"));
        assert!(!verify_password(&stored, ""));
        assert!(verify_password(&None, ""));
        assert!(!verify_password(&None, "x"));
    }
}
