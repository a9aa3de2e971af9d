//! Which passwords nats-server treats as bcrypt hashes (its `isBcrypt`): `$2a$`, `$2b$`, `$2x$`
//! or `$2y$`, then two digits of cost and `$`. Anything else is compared as plain text (and
//! makes nats-server log its plaintext-password warning).

/// Whether nats-server reads `password` as a bcrypt hash.
pub fn is_bcrypt(password: &str) -> bool {
    let b = password.as_bytes();
    b.len() >= 7
        && b.starts_with(b"$2")
        && matches!(b[2], b'a' | b'b' | b'x' | b'y')
        && b[3] == b'$'
        && b[4].is_ascii_digit()
        && b[5].is_ascii_digit()
        && b[6] == b'$'
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `$2a$`, `$2b$` and `$2y$` hashes were checked to authenticate against nats-server 2.15.1
    /// (reference/config.md, "Passwords"); `$2c$` is not a prefix it knows.
    #[test]
    fn bcrypt_prefixes_as_nats_server_reads_them() {
        assert!(is_bcrypt(
            "$2a$11$rMWCjY8x.9EQ1Byq6YIIiO8R1Ex/idX7uJJChXxmHUCZe3OhteZpK"
        ));
        assert!(is_bcrypt("$2b$10$abc"));
        assert!(is_bcrypt("$2y$10$abc"));
        assert!(is_bcrypt("$2x$04$"));
        assert!(!is_bcrypt("$2c$10$abc"));
        assert!(!is_bcrypt("$2a$1$abc"));
        assert!(!is_bcrypt("$notahash"));
        assert!(!is_bcrypt("plain"));
    }
}
