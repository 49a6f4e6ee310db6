//! Decoding of `/api/v1/query` response bodies.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::IgnoredAny;

/// The labels of one series, borrowed from the response body where JSON escaping allows.
pub type Labels<'a> = BTreeMap<Text<'a>, Text<'a>>;

/// A string from the response body: borrowed when it has no JSON escapes, owned otherwise.
///
/// A bare `Cow<str>` inside a map is always decoded owned; this wrapper is what makes serde
/// borrow.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
pub struct Text<'a>(#[serde(borrow)] pub Cow<'a, str>);

impl std::borrow::Borrow<str> for Text<'_> {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for Text<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

/// One series of an instant vector: its labels and its value at the query time.
///
/// Label maps stay at this edge; the poller turns them into domain types straight away.
/// They borrow from the response body, so a poll of thousands of GPUs does not allocate a
/// string per label per series only to throw most of them away.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample<'a> {
    /// The series' labels, `__name__` included when Prometheus sends it.
    pub labels: Labels<'a>,
    /// The value, which may be NaN or infinite: Prometheus can hold both.
    pub value: f64,
}

/// Why a response body could not be turned into samples.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    /// The body is not the JSON the API documents.
    #[error("response is not a Prometheus API document: {0}")]
    Malformed(String),
    /// Prometheus reported a failure in the body.
    #[error("{error_type}: {message}")]
    Api {
        /// Prometheus's `errorType`, such as `bad_data` or `timeout`.
        error_type: String,
        /// Prometheus's `error` text.
        message: String,
    },
    /// The query answered something other than an instant vector.
    #[error("expected a vector result, got {0}")]
    NotAVector(String),
    /// A sample value is not a number in any form Prometheus writes.
    #[error("sample value {0:?} is not a number")]
    BadValue(String),
}

#[derive(Deserialize)]
struct Envelope<'a> {
    status: Cow<'a, str>,
    #[serde(borrow)]
    data: Option<Data<'a>>,
    #[serde(rename = "errorType")]
    error_type: Option<String>,
    error: Option<String>,
}

/// `data`, typed by `resultType`, which Prometheus writes before `result`, so the vector is
/// decoded straight into samples without an intermediate JSON tree.
#[derive(Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum Data<'a> {
    #[serde(borrow)]
    Vector(Vec<VectorSample<'a>>),
    Matrix(IgnoredAny),
    Scalar(IgnoredAny),
    String(IgnoredAny),
}

impl Data<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Data::Vector(_) => "vector",
            Data::Matrix(_) => "matrix",
            Data::Scalar(_) => "scalar",
            Data::String(_) => "string",
        }
    }
}

#[derive(Deserialize)]
struct VectorSample<'a> {
    #[serde(borrow)]
    metric: Labels<'a>,
    #[serde(borrow)]
    value: (f64, Text<'a>),
}

/// Decodes a query response body, whatever the HTTP status it came with.
///
/// Prometheus sends its error document with 4xx and 5xx statuses too, so the caller decodes
/// those bodies here as well, to report Prometheus's own reason.
///
/// Known shortcoming: one sample whose value is not a number in a form Prometheus writes
/// fails the whole query, so the metric is missing for every GPU in that poll.
pub fn decode(body: &[u8]) -> Result<Vec<Sample<'_>>, DecodeError> {
    let envelope: Envelope<'_> =
        serde_json::from_slice(body).map_err(|e| DecodeError::Malformed(e.to_string()))?;

    if envelope.status != "success" {
        return Err(DecodeError::Api {
            error_type: envelope.error_type.unwrap_or_else(|| "unknown".into()),
            message: envelope.error.unwrap_or_else(|| "no reason given".into()),
        });
    }

    match envelope.data {
        Some(Data::Vector(series)) => series.into_iter().map(Sample::try_from).collect(),
        Some(other) => Err(DecodeError::NotAVector(other.kind().to_owned())),
        None => Err(DecodeError::Malformed(
            "status is success but data is missing".into(),
        )),
    }
}

impl<'a> TryFrom<VectorSample<'a>> for Sample<'a> {
    type Error = DecodeError;

    fn try_from(raw: VectorSample<'a>) -> Result<Self, Self::Error> {
        let (_timestamp, value) = raw.value;
        Ok(Sample {
            labels: raw.metric,
            value: parse_sample_value(&value)?,
        })
    }
}

/// Parses a sample value the way Prometheus writes it in JSON: a decimal or exponent
/// number, `NaN`, `+Inf` or `-Inf`, always inside a string.
pub fn parse_sample_value(text: &str) -> Result<f64, DecodeError> {
    match text {
        "NaN" => Ok(f64::NAN),
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ => text
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| DecodeError::BadValue(text.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_str(body: &str) -> Result<Vec<Sample<'_>>, DecodeError> {
        decode(body.as_bytes())
    }

    #[test]
    fn a_vector_result_becomes_samples_with_their_labels() {
        let samples = decode_str(
            r#"{"status":"success","data":{"resultType":"vector","result":[
                {"metric":{"__name__":"m","uuid":"abc"},"value":[1700000000.5,"0.25"]}]}}"#,
        )
        .expect("valid body");

        assert_eq!(samples.len(), 1);
        assert_eq!(&*samples[0].labels["uuid"], "abc");
        assert_eq!(samples[0].value, 0.25);
    }

    #[test]
    fn an_empty_vector_is_no_samples_not_an_error() {
        let samples =
            decode_str(r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#);
        assert_eq!(samples, Ok(vec![]));
    }

    #[test]
    fn prometheus_error_documents_keep_their_type_and_reason() {
        let err = decode_str(r#"{"status":"error","errorType":"bad_data","error":"parse error"}"#)
            .expect_err("error document");
        assert_eq!(err.to_string(), "bad_data: parse error");
    }

    #[test]
    fn a_matrix_result_is_refused_by_name() {
        let err = decode_str(r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#)
            .expect_err("not a vector");
        assert_eq!(err, DecodeError::NotAVector("matrix".into()));
    }

    #[test]
    fn a_body_that_is_not_json_is_malformed() {
        let err = decode_str("<html>proxy error</html>").expect_err("not json");
        assert!(matches!(err, DecodeError::Malformed(_)), "{err:?}");
    }

    #[test]
    fn special_values_parse_as_prometheus_writes_them() {
        assert!(parse_sample_value("NaN").expect("NaN").is_nan());
        assert_eq!(parse_sample_value("+Inf"), Ok(f64::INFINITY));
        assert_eq!(parse_sample_value("-Inf"), Ok(f64::NEG_INFINITY));
        assert_eq!(parse_sample_value("1e+03"), Ok(1000.0));
        assert_eq!(parse_sample_value("8.5520809984e+10"), Ok(85_520_809_984.0));
        assert_eq!(parse_sample_value("-0.5"), Ok(-0.5));
    }

    #[test]
    fn text_that_is_no_number_is_refused_with_the_text() {
        let err = parse_sample_value("twelve").expect_err("not a number");
        assert_eq!(err.to_string(), r#"sample value "twelve" is not a number"#);
    }

    #[test]
    fn a_sample_whose_value_is_no_number_fails_the_whole_decode() {
        let err = decode_str(
            r#"{"status":"success","data":{"resultType":"vector","result":[
                {"metric":{},"value":[1,"x"]}]}}"#,
        )
        .expect_err("bad value");
        assert_eq!(err, DecodeError::BadValue("x".into()));
    }

    #[test]
    fn labels_borrow_from_the_body_unless_they_hold_escapes() {
        let samples = decode_str(
            r#"{"status":"success","data":{"resultType":"vector","result":[
                {"metric":{"uuid":"abc","name":"A \u0026 B"},"value":[1,"1"]}]}}"#,
        )
        .expect("valid body");

        assert!(matches!(samples[0].labels["uuid"].0, Cow::Borrowed(_)));
        assert_eq!(&*samples[0].labels["name"], "A & B");
    }
}
