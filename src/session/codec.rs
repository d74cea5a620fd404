//! Sealing and opening cookie values: AES-256-GCM with keys derived from `session.secret`.
//!
//! The first key seals, every key opens, so secrets rotate without logging anyone out. The purpose
//! ("session", "login") is authenticated as associated data, so one kind of cookie can never be
//! replayed as another.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hkdf;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

use crate::secret::Secret;

/// What a sealed value is for; bound into the ciphertext.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Session,
    Login,
}

impl Purpose {
    fn aad(self) -> &'static [u8] {
        match self {
            Self::Session => b"portcullis session v1",
            Self::Login => b"portcullis login v1",
        }
    }
}

/// Why a sealed value could not be opened. Callers treat every case as "no such cookie".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenError {
    Encoding,
    Tampered,
}

pub struct Codec {
    keys: Vec<LessSafeKey>,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Codec({} keys)", self.keys.len())
    }
}

impl Codec {
    /// `secrets` are the configured secrets (base64 of >= 32 random bytes, validated by the config);
    /// each becomes an AES key through HKDF-SHA256, so a secret is never used raw.
    pub fn new(secrets: &[Secret]) -> Self {
        Self::for_provider(secrets, None)
    }

    /// [`Codec::new`] for the sessions of one of several providers: its own keys, so that a
    /// cookie one provider's sign-in sealed never opens as another's. `None` (the first provider)
    /// keeps the keys of a single-provider config, so its sessions outlive adding a second.
    pub fn for_provider(secrets: &[Secret], provider: Option<&str>) -> Self {
        let info = match provider {
            None => b"aes-256-gcm".to_vec(),
            Some(name) => format!("aes-256-gcm provider {name}").into_bytes(),
        };
        let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"portcullis cookie keys");
        let keys = secrets
            .iter()
            .map(|s| {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(s.expose().trim())
                    .unwrap_or_else(|_| s.expose().as_bytes().to_vec());
                let prk = salt.extract(&raw);
                let info: &[&[u8]] = &[&info];
                let okm = prk
                    .expand(info, &AES_256_GCM)
                    .expect("32 bytes is a valid HKDF output length");
                LessSafeKey::new(UnboundKey::from(okm))
            })
            .collect();
        Self { keys }
    }

    pub fn is_configured(&self) -> bool {
        !self.keys.is_empty()
    }

    /// base64url(nonce || ciphertext || tag).
    pub fn seal(&self, purpose: Purpose, plaintext: &[u8]) -> String {
        let key = self
            .keys
            .first()
            .expect("sealing needs a configured session.secret");
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).expect("the operating system's random source failed");
        let mut buf = plaintext.to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(purpose.aad()),
            &mut buf,
        )
        .expect("AES-GCM sealing of a cookie-sized value cannot fail");
        let mut out = Vec::with_capacity(NONCE_LEN + buf.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        B64.encode(out)
    }

    pub fn open(&self, purpose: Purpose, sealed: &str) -> Result<Vec<u8>, OpenError> {
        let raw = B64.decode(sealed).map_err(|_| OpenError::Encoding)?;
        if raw.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(OpenError::Encoding);
        }
        let (nonce, ciphertext) = raw.split_at(NONCE_LEN);
        for key in &self.keys {
            let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| OpenError::Encoding)?;
            let mut buf = ciphertext.to_vec();
            if let Ok(plain) = key.open_in_place(nonce, Aad::from(purpose.aad()), &mut buf) {
                return Ok(plain.to_vec());
            }
        }
        Err(OpenError::Tampered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> Secret {
        Secret::new(crate::secret::generate_base64(32))
    }

    #[test]
    fn round_trip_and_fresh_nonces() {
        let c = Codec::new(&[secret()]);
        let a = c.seal(Purpose::Session, b"hello");
        let b = c.seal(Purpose::Session, b"hello");
        assert_ne!(a, b, "every seal uses a fresh nonce");
        assert_eq!(c.open(Purpose::Session, &a).unwrap(), b"hello");
    }

    #[test]
    fn tampering_truncation_and_garbage_are_refused() {
        let c = Codec::new(&[secret()]);
        let sealed = c.seal(Purpose::Session, b"some session");
        let mut raw = B64.decode(&sealed).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        assert_eq!(
            c.open(Purpose::Session, &B64.encode(&raw)),
            Err(OpenError::Tampered)
        );
        raw[last] ^= 1;
        raw[NONCE_LEN] ^= 0x80;
        assert_eq!(
            c.open(Purpose::Session, &B64.encode(&raw)),
            Err(OpenError::Tampered)
        );
        assert!(
            c.open(Purpose::Session, &sealed[..sealed.len() - 4])
                .is_err()
        );
        assert!(
            c.open(Purpose::Session, &sealed[..sealed.len() - 3])
                .is_err()
        );
        assert_eq!(c.open(Purpose::Session, "short"), Err(OpenError::Encoding));
        assert_eq!(
            c.open(Purpose::Session, "!!!not base64!!!"),
            Err(OpenError::Encoding)
        );
    }

    #[test]
    fn a_wrong_key_or_purpose_cannot_open() {
        let c = Codec::new(&[secret()]);
        let other = Codec::new(&[secret()]);
        let sealed = c.seal(Purpose::Login, b"tx");
        assert_eq!(
            other.open(Purpose::Login, &sealed),
            Err(OpenError::Tampered)
        );
        assert_eq!(c.open(Purpose::Session, &sealed), Err(OpenError::Tampered));
    }

    #[test]
    fn rotation_first_seals_all_open() {
        let (old, new) = (secret(), secret());
        let before = Codec::new(std::slice::from_ref(&old));
        let sealed_before = before.seal(Purpose::Session, b"x");
        let after = Codec::new(&[new.clone(), old]);
        assert_eq!(after.open(Purpose::Session, &sealed_before).unwrap(), b"x");
        let sealed_after = after.seal(Purpose::Session, b"y");
        assert_eq!(
            Codec::new(&[new])
                .open(Purpose::Session, &sealed_after)
                .unwrap(),
            b"y"
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]

        /// Whatever is sealed opens to itself, and no changed byte of it opens at all.
        #[test]
        fn seal_opens_to_itself_and_never_when_tampered(
            plain in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048),
            flip in proptest::prelude::any::<proptest::sample::Index>(),
            bit in 0u8..8,
        ) {
            let c = Codec::new(&[Secret::new("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")]);
            let sealed = c.seal(Purpose::Session, &plain);
            proptest::prop_assert_eq!(c.open(Purpose::Session, &sealed).unwrap(), plain);
            let mut raw = B64.decode(&sealed).unwrap();
            let i = flip.index(raw.len());
            raw[i] ^= 1 << bit;
            proptest::prop_assert!(c.open(Purpose::Session, &B64.encode(&raw)).is_err());
        }
    }
}
