//! `s3://BUCKET/PREFIX` destinations through object_store's [`AmazonS3`](object_store::aws::AmazonS3).

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use url::Url;

use crate::error::{Error, Result};

/// The S3 settings of an `s3://` URL (credentials and defaults from `AWS_*` variables,
/// then the URL's `endpoint`, `region` and `allow_http` options) and the root prefix; checks
/// the URL without building a client.
pub(crate) fn builder(parsed: &Url, shown: &str) -> Result<(AmazonS3Builder, Path)> {
    let invalid = |reason: &str| Error::InvalidUrl {
        url: shown.to_owned(),
        reason: reason.to_owned(),
    };
    let bucket = parsed
        .host_str()
        .filter(|b| !b.is_empty())
        .ok_or_else(|| invalid("S3 URLs name a bucket: s3://BUCKET/PREFIX"))?;
    if !parsed.username().is_empty() || parsed.port().is_some() {
        return Err(invalid(
            "S3 URLs are s3://BUCKET/PREFIX; credentials come from AWS_* variables",
        ));
    }
    let prefix = crate::url::decoded_path(parsed, shown)?;
    let root = Path::parse(&prefix).map_err(|e| invalid(&format!("bad prefix {prefix:?}: {e}")))?;

    let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
    for (key, value) in parsed.query_pairs() {
        match key.as_ref() {
            "endpoint" => {
                let endpoint = Url::parse(&value)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
                    .ok_or_else(|| invalid("endpoint must be an http:// or https:// URL"))?;
                // Path-style requests: S3-compatible servers rarely have per-bucket DNS.
                builder = builder
                    .with_endpoint(endpoint.as_str().trim_end_matches('/'))
                    .with_virtual_hosted_style_request(false);
            }
            "region" if !value.is_empty() => builder = builder.with_region(value.as_ref()),
            "allow_http" => {
                let allow = match value.as_ref() {
                    "true" | "1" | "yes" => true,
                    "false" | "0" | "no" => false,
                    _ => return Err(invalid("allow_http is true or false")),
                };
                builder = builder.with_allow_http(allow);
            }
            other => {
                return Err(invalid(&format!(
                    "unknown option {other:?} (S3 options: endpoint, region, allow_http)"
                )));
            }
        }
    }
    Ok((builder, root))
}

/// Builds the store (no request is made).
pub(crate) fn build(builder: AmazonS3Builder, shown: String) -> Result<Arc<dyn ObjectStore>> {
    install_crypto_provider();
    let store = builder
        .build()
        .map_err(|source| Error::Open { url: shown, source })?;
    Ok(Arc::new(store))
}

/// HTTPS to S3 goes through rustls on ring (the crypto russh uses too, so only one is
/// built); rustls needs it installed as the process default once. An application that
/// installed another provider first keeps it.
pub(crate) fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls_parse() {
        let (_, root) = crate::open(
            "s3://bucket/backups/server%201?endpoint=http://127.0.0.1:9000&region=eu-west-1&allow_http=true",
        )
        .unwrap();
        assert_eq!(root.as_ref(), "backups/server 1");
        let (store, root) = crate::open("s3://bucket").unwrap();
        assert_eq!(root, Path::default());
        assert!(store.to_string().contains("bucket"), "{store}");
        for bad in [
            "s3:///prefix",
            "s3://bucket/x?color=blue",
            "s3://bucket/x?endpoint=ftp://host",
            "s3://bucket/x?allow_http=maybe",
            "s3://user@bucket/x",
            "s3://bucket/a//b",
        ] {
            assert!(
                matches!(crate::open(bad), Err(Error::InvalidUrl { .. })),
                "{bad}"
            );
        }
    }
}
