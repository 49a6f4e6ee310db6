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
    /// The evaluation time of the answer, Unix seconds.
    pub timestamp: f64,
    /// The value, which may be NaN or infinite (Prometheus can hold both), or the text that
    /// was not a number in any form Prometheus writes. One odd sample spoils only itself:
    /// the poller reports it for its GPU and keeps every other series of the answer.
    pub value: Result<f64, Text<'a>>,
}

/// A successful answer: its series, and what Prometheus said about how complete they are.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Vector<'a> {
    /// The series.
    pub samples: Vec<Sample<'a>>,
    /// `warnings` and `infos` (Thanos and Prometheus report partial answers this way) and
    /// VictoriaMetrics' `isPartial`, one line each: the data is usable but may lack series.
    pub warnings: Vec<String>,
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
    #[serde(default)]
    warnings: Vec<String>,
    #[serde(default)]
    infos: Vec<String>,
    #[serde(rename = "isPartial", default)]
    is_partial: bool,
}

impl Envelope<'_> {
    /// At most a few lines, each of readable length: the text comes from upstream and
    /// ends up in every response's `snapshot.errors`.
    fn notices(&self) -> Vec<String> {
        const MOST: usize = 5;
        let warnings = self.warnings.iter().map(|w| format!("warning: {w}"));
        let infos = self.infos.iter().map(|i| format!("info: {i}"));
        let partial = self
            .is_partial
            .then(|| "the answer is marked partial (isPartial)".to_owned());
        warnings
            .chain(infos)
            .chain(partial)
            .take(MOST)
            .map(|line| abbreviate(&line))
            .collect()
    }
}

/// Upstream text cut to a readable length, for messages that quote it.
pub fn abbreviate(text: &str) -> String {
    const LIMIT: usize = 300;
    match text.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
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
pub fn decode(body: &[u8]) -> Result<Vector<'_>, DecodeError> {
    let mut envelope: Envelope<'_> =
        serde_json::from_slice(body).map_err(|e| DecodeError::Malformed(e.to_string()))?;

    if envelope.status != "success" {
        return Err(DecodeError::Api {
            error_type: envelope.error_type.unwrap_or_else(|| "unknown".into()),
            message: envelope.error.unwrap_or_else(|| "no reason given".into()),
        });
    }

    let warnings = envelope.notices();
    match envelope.data.take() {
        Some(Data::Vector(series)) => Ok(Vector {
            samples: series.into_iter().map(Sample::from).collect(),
            warnings,
        }),
        Some(other) => Err(DecodeError::NotAVector(other.kind().to_owned())),
        None => Err(DecodeError::Malformed(
            "status is success but data is missing".into(),
        )),
    }
}

impl<'a> From<VectorSample<'a>> for Sample<'a> {
    fn from(raw: VectorSample<'a>) -> Self {
        let (timestamp, text) = raw.value;
        Sample {
            labels: raw.metric,
            timestamp,
            value: parse_sample_value(&text).map_err(|_| text),
        }
    }
}

/// Parses a sample value as Prometheus itself parses numbers (Go's `strconv.ParseFloat`):
/// decimal and exponent forms, hexadecimal floats such as `0x1p-2`, and `NaN`, `Inf`,
/// `+Inf`, `-Inf`, `Infinity` in any case. Prometheus writes values inside strings, and
/// proxies and other implementations of its API do not all write them the same way.
///
/// A hexadecimal float whose mantissa needs more than 64 bits is refused rather than
/// rounded, which Go would do; no known implementation writes one.
pub fn parse_sample_value(text: &str) -> Result<f64, DecodeError> {
    let bad = || DecodeError::BadValue(abbreviate(text));
    let unsigned = text.trim_start_matches(['+', '-']);
    if unsigned.len() + 1 < text.len() {
        return Err(bad());
    }

    if unsigned.starts_with("0x") || unsigned.starts_with("0X") {
        return hexf_parse::parse_hexf64(text, false).map_err(|_| bad());
    }
    if unsigned.eq_ignore_ascii_case("nan") {
        // Go refuses a signed NaN, which Rust's parser would take.
        return if unsigned.len() == text.len() {
            Ok(f64::NAN)
        } else {
            Err(bad())
        };
    }
    // Rust's parser takes the same decimal, exponent and infinity forms as Go's.
    text.parse::<f64>().map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_str(body: &str) -> Result<Vec<Sample<'_>>, DecodeError> {
        decode(body.as_bytes()).map(|vector| vector.samples)
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
        assert_eq!(samples[0].value, Ok(0.25));
        assert_eq!(samples[0].timestamp, 1_700_000_000.5);
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
    fn the_odder_forms_go_accepts_parse_too() {
        assert_eq!(parse_sample_value("0x1p-2"), Ok(0.25));
        assert_eq!(parse_sample_value("-0X1.8P+1"), Ok(-3.0));
        assert_eq!(parse_sample_value("inf"), Ok(f64::INFINITY));
        assert_eq!(parse_sample_value("-Infinity"), Ok(f64::NEG_INFINITY));
        assert!(parse_sample_value("nan").expect("nan").is_nan());
        assert_eq!(parse_sample_value("1E3"), Ok(1000.0));
        assert_eq!(parse_sample_value(".5"), Ok(0.5));
    }

    #[test]
    fn forms_go_refuses_are_refused() {
        for text in [
            "", "+-1", "--1", "0x", "0x1.8", "1,5", " 1", "0b101", "+nan", "twelve",
        ] {
            assert!(parse_sample_value(text).is_err(), "{text:?} parsed");
        }
    }

    #[test]
    fn text_that_is_no_number_is_refused_with_the_text() {
        let err = parse_sample_value("twelve").expect_err("not a number");
        assert_eq!(err.to_string(), r#"sample value "twelve" is not a number"#);
    }

    #[test]
    fn a_sample_whose_value_is_no_number_spoils_only_itself() {
        let samples = decode_str(
            r#"{"status":"success","data":{"resultType":"vector","result":[
                {"metric":{"uuid":"a"},"value":[1,"x"]},
                {"metric":{"uuid":"b"},"value":[1,"0.5"]}]}}"#,
        )
        .expect("the answer is still usable");

        assert_eq!(samples[0].value, Err(Text(Cow::Borrowed("x"))));
        assert_eq!(samples[1].value, Ok(0.5));
    }

    #[test]
    fn warnings_infos_and_is_partial_are_kept_beside_the_data() {
        let vector = decode(
            br#"{"status":"success","isPartial":true,
                 "warnings":["store gateway unreachable"],"infos":["metric might not be a counter"],
                 "data":{"resultType":"vector","result":[{"metric":{},"value":[1,"1"]}]}}"#,
        )
        .expect("usable answer");

        assert_eq!(vector.samples.len(), 1);
        assert_eq!(
            vector.warnings,
            [
                "warning: store gateway unreachable",
                "info: metric might not be a counter",
                "the answer is marked partial (isPartial)",
            ]
        );
    }

    #[test]
    fn a_complete_answer_has_no_warnings() {
        let vector = decode(br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#)
            .expect("usable answer");
        assert!(vector.warnings.is_empty());
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
