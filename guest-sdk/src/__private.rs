//! Support for the code that `#[step]` and `#[workflow]` generate in the
//! user's crate. Not a public API: it may change in any release.

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use wit_bindgen;

use crate::Error;
use crate::bindings::ferry::runtime::types::StepError;

/// Parses `input` (JSON) into `I`, runs `f`, and serializes its output.
///
/// `what` names the entry point in error messages, e.g. ``step `pull` ``.
pub fn run_json<I, O, F>(what: &str, input: &str, f: F) -> Result<String, StepError>
where
    I: DeserializeOwned,
    O: Serialize,
    F: FnOnce(I) -> Result<O, Error>,
{
    run(what, input, f).map_err(StepError::from)
}

fn run<I, O, F>(what: &str, input: &str, f: F) -> Result<String, Error>
where
    I: DeserializeOwned,
    O: Serialize,
    F: FnOnce(I) -> Result<O, Error>,
{
    let input: I =
        serde_json::from_str(input).map_err(|e| Error::fatal(format!("input is not valid for {what}: {e}")))?;
    let output = f(input)?;
    serde_json::to_string(&output).map_err(|e| Error::fatal(format!("output of {what} is not serializable: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct In {
        url: String,
    }

    #[derive(serde::Serialize)]
    struct Out {
        len: usize,
    }

    fn pull(input: In) -> Result<Out, Error> {
        if input.url.is_empty() {
            return Err(Error::retryable("empty"));
        }
        Ok(Out { len: input.url.len() })
    }

    #[test]
    fn runs_and_serializes() {
        assert_eq!(run_json("step `pull`", r#"{"url":"abc"}"#, pull).unwrap(), r#"{"len":3}"#);
    }

    #[test]
    fn bad_input_is_fatal_and_names_the_step() {
        let err = run_json("step `pull`", r#"{"uri":"abc"}"#, pull).unwrap_err();
        match err {
            StepError::Fatal(m) => {
                assert_eq!(m, "input is not valid for step `pull`: missing field `url` at line 1 column 13")
            }
            other => panic!("{other:?}"),
        }
        let err = run_json("step `pull`", "not json", pull).unwrap_err();
        assert!(matches!(err, StepError::Fatal(m) if m.starts_with("input is not valid for step `pull`: expected")));
    }

    #[test]
    fn function_errors_keep_their_kind() {
        let err = run_json("step `pull`", r#"{"url":""}"#, pull).unwrap_err();
        assert!(matches!(err, StepError::Retryable(m) if m == "empty"));
    }

    #[test]
    fn unserializable_output_is_fatal() {
        let mut map = std::collections::HashMap::new();
        map.insert((1, 2), 3);
        let err = run_json("step `m`", "null", |(): ()| Ok(map)).unwrap_err();
        assert!(
            matches!(err, StepError::Fatal(ref m) if m.starts_with("output of step `m` is not serializable: ")),
            "{err:?}"
        );
    }
}
