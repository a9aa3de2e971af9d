//! NKEY user keys (the `nkeys` crate): generated key pairs, seeds read back from credentials
//! files, and the nonce signature a client sends in CONNECT.

use base64::Engine as _;

/// A fresh user key pair: (public key `U...`, seed `SU...`).
pub fn generate() -> Result<(String, String), NkeyError> {
    let pair = nkeys::KeyPair::new_user();
    let seed = pair.seed().map_err(|e| NkeyError(e.to_string()))?;
    Ok((pair.public_key(), seed))
}

/// A user's key pair from its seed; a seed that is not a user's (or not a seed) is an error.
fn user_pair(seed: &str) -> Result<nkeys::KeyPair, NkeyError> {
    let pair = nkeys::KeyPair::from_seed(seed.trim())
        .map_err(|e| NkeyError(format!("not a valid NKEY seed: {e}")))?;
    if pair.key_pair_type() != nkeys::KeyPairType::User {
        return Err(NkeyError(format!(
            "the seed is a {:?} key's, not a user's (SU...)",
            pair.key_pair_type()
        )));
    }
    Ok(pair)
}

/// The public key (`U...`) of a user's seed.
pub fn public_key_of(seed: &str) -> Result<String, NkeyError> {
    Ok(user_pair(seed)?.public_key())
}

/// The server's nonce signed with the seed, as CONNECT's `sig` (base64url without padding,
/// which nats-server and natsd both read).
pub fn sign_nonce(seed: &str, nonce: &str) -> Result<String, NkeyError> {
    let signature = user_pair(seed)?
        .sign(nonce.as_bytes())
        .map_err(|e| NkeyError(format!("signing failed: {e}")))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signature))
}

/// Whether `key` is a user's public NKEY, as the servers require of `nkey:` in `users`.
pub fn is_user_public_key(key: &str) -> bool {
    nkeys::KeyPair::from_public_key(key)
        .is_ok_and(|pair| pair.key_pair_type() == nkeys::KeyPairType::User)
}

/// An NKEY that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NkeyError(String);

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    #[test]
    fn generated_pairs_read_back_and_sign() {
        let (public, seed) = generate().unwrap();
        assert!(public.starts_with('U') && public.len() == 56, "{public}");
        assert!(seed.starts_with("SU"), "seed prefix");
        assert!(is_user_public_key(&public));
        assert_eq!(public_key_of(&seed).unwrap(), public);
        assert_eq!(public_key_of(&format!("{seed}\n")).unwrap(), public);
        let sig = sign_nonce(&seed, "abc").unwrap();
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&sig)
            .unwrap();
        nkeys::KeyPair::from_public_key(&public)
            .unwrap()
            .verify(b"abc", &raw)
            .unwrap();
        assert_ne!(generate().unwrap().0, public);
    }

    #[test]
    fn refuses_other_keys_and_garbage() {
        let account = nkeys::KeyPair::new_account();
        assert!(!is_user_public_key(&account.public_key()));
        assert!(public_key_of(&account.seed().unwrap()).is_err());
        assert!(!is_user_public_key("UNOTAKEY"));
        let (public, seed) = generate().unwrap();
        // One changed character breaks the checksum.
        let mut tampered = seed.clone().into_bytes();
        let last = tampered.len() - 1;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert!(public_key_of(&tampered).map_or(true, |k| k != public));
        assert!(public_key_of("").is_err());
    }
}
