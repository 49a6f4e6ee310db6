//! Query-string checking: every endpoint names the parameters it takes, and anything else,
//! or a malformed value, is a 400 that names the parameter. A silently ignored `?nodes=x`
//! would look like a filter that worked.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::ApiError;
use super::error::abbreviate;
use crate::snapshot::NodeName;

/// The decoded query string.
#[derive(Debug)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let pairs = query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(decode_pair)
            .collect::<Result<_, _>>()?;
        Ok(Params { pairs })
    }
}

/// `name=value` as a form encodes it (`+` for a space, `%XX` for a byte), refusing bytes that
/// are not UTF-8 once decoded: a lossy decoding would turn them into U+FFFD and match
/// nothing, where the caller deserves to hear that the value is malformed.
fn decode_pair(pair: &str) -> Result<(String, String), ApiError> {
    let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
    let name = decode(name).ok_or_else(|| {
        ApiError::BadParameter("a query parameter name is not UTF-8 once decoded".to_owned())
    })?;
    let value = decode(value).ok_or_else(|| {
        ApiError::BadParameter(format!(
            "query parameter {:?} is not UTF-8 once decoded",
            abbreviate(&name)
        ))
    })?;
    Ok((name, value))
}

fn decode(text: &str) -> Option<String> {
    let spaced = text.replace('+', " ");
    let decoded = percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .ok()?;
    Some(decoded.into_owned())
}

impl Params {
    /// Refuses any parameter not in `known`.
    pub fn allow(&self, known: &[&str]) -> Result<(), ApiError> {
        let Some((name, _)) = self
            .pairs
            .iter()
            .find(|(n, _)| !known.contains(&n.as_str()))
        else {
            return Ok(());
        };
        let takes = match known {
            [] => "none".to_owned(),
            _ => known.join(", "),
        };
        Err(ApiError::BadParameter(format!(
            "unknown query parameter {:?}: this endpoint takes {takes}",
            abbreviate(name)
        )))
    }

    /// `node=a,b` (repeatable): the named nodes, sorted and without duplicates; `None` when
    /// the parameter is absent.
    pub fn nodes(&self) -> Result<Option<Vec<NodeName>>, ApiError> {
        let values: Vec<&str> = self.values("node").collect();
        if values.is_empty() {
            return Ok(None);
        }
        let mut names = Vec::new();
        for raw in values.iter().flat_map(|v| v.split(',')) {
            let name = NodeName::parse(raw).map_err(|_| {
                ApiError::BadParameter(
                    "query parameter \"node\" takes node names separated by commas, without empty ones"
                        .to_owned(),
                )
            })?;
            names.push(name);
        }
        names.sort();
        names.dedup();
        Ok(Some(names))
    }

    /// The single value of `name`, if given; a repeated parameter is refused.
    pub fn single<'a>(&'a self, name: &'a str) -> Result<Option<&'a str>, ApiError> {
        let mut values = self.values(name);
        let first = values.next();
        if values.next().is_some() {
            return Err(ApiError::BadParameter(format!(
                "query parameter {name:?} is given more than once"
            )));
        }
        Ok(first)
    }

    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Extractor for endpoints that take no query parameters.
#[derive(Debug)]
pub struct NoParams;

impl<S: Send + Sync> FromRequestParts<S> for NoParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Params::from_request_parts(parts, state).await?.allow(&[])?;
        Ok(NoParams)
    }
}
