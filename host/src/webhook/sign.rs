//! Standard Webhooks signatures.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The `webhook-signature` header value for a message: `v1,` + base64 of
/// HMAC-SHA256 over `id.timestamp.body`, keyed by the base64-decoded part
/// of a `whsec_` secret.
pub fn signature(
    secret: &str,
    id: &str,
    timestamp_secs: u64,
    body: &str,
) -> Result<String, String> {
    let key = secret
        .strip_prefix("whsec_")
        .ok_or("the webhook secret does not start with whsec_")?;
    let key = BASE64
        .decode(key)
        .map_err(|e| format!("the webhook secret is not valid base64: {e}"))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|e| e.to_string())?;
    mac.update(format!("{id}.{timestamp_secs}.").as_bytes());
    mac.update(body.as_bytes());
    Ok(format!("v1,{}", BASE64.encode(mac.finalize().into_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_spec_example() {
        // The example of the Standard Webhooks reference libraries.
        let sig = signature(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
        )
        .unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(signature("secret", "i", 0, "").is_err());
        assert!(signature("whsec_%%%", "i", 0, "").is_err());
    }
}
