//! How a binary ends on an error.

use std::process::ExitCode;

/// Ends a binary: on error, the error and its causes on standard error and
/// exit status 1.
///
/// Returning the error from `main` would print it through `Debug`, which
/// adds a backtrace whenever `RUST_BACKTRACE` is set: an operator who keeps
/// that variable on would see a plain start-up error ("no key file at …")
/// buried under thirty frames. Panics still print theirs.
pub fn report(result: anyhow::Result<()>) -> ExitCode {
    let Err(error) = result else {
        return ExitCode::SUCCESS;
    };
    eprintln!("{}", describe(&error));
    ExitCode::FAILURE
}

/// `Error: …` and a `Caused by:` list, as `anyhow` prints them, without
/// the backtrace.
fn describe(error: &anyhow::Error) -> String {
    let mut text = format!("Error: {error}");
    let mut causes = error.chain().skip(1).peekable();
    if causes.peek().is_some() {
        text.push_str("\n\nCaused by:");
        for cause in causes {
            text.push_str(&format!("\n    {cause}"));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_reads_as_its_message_and_causes_only() {
        let error = anyhow::anyhow!("no such file").context("reading the key file owner.json");
        assert_eq!(
            describe(&error),
            "Error: reading the key file owner.json\n\nCaused by:\n    no such file"
        );
        assert_eq!(describe(&anyhow::anyhow!("bad flag")), "Error: bad flag");
    }
}
