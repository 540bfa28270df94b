//! How failures reach the user: one line on stderr with the cause chain, exit code 1; a reader
//! that went away (`stratalake ... | head`) ends the command quietly with success.

use std::process::ExitCode;

use crate::lake::default_principal;

/// Whether an error comes from writing to a pipe whose reader has gone (`... | head`).
pub fn broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || c.to_string().contains("Broken pipe")
    })
}

/// `stratalake ... | head`: once the reader is gone, stop quietly (as ripgrep and git do)
/// instead of panicking in a print.
pub fn quiet_on_broken_pipe() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.contains("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(0);
        }
        default_hook(info);
    }));
}

/// Report a command's failure: `error: ...` on one line, exit code 1 (success for a broken
/// pipe). `acting_as_default`: no `--as` was given, so a principal the lake does not know
/// came from `$USER`, which the message then says.
pub fn report(e: &anyhow::Error, acting_as_default: bool) -> ExitCode {
    if broken_pipe(e) {
        return ExitCode::SUCCESS;
    }
    let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
    let mut msg = chain[0].clone();
    for c in &chain[1..] {
        if !msg.contains(c.as_str()) {
            msg.push_str(": ");
            msg.push_str(c);
        }
    }
    // One line, whatever a lower layer put in its message (an S3 error body, say).
    let mut msg = msg.split_whitespace().collect::<Vec<_>>().join(" ");
    if acting_as_default && msg.contains("is not a principal of this lake") {
        msg.push_str(&format!(
            " (commands act as {} from $USER unless --as NAME or STRATALAKE_PRINCIPAL names \
             another; `stratalake init` printed who became the lake's administrator)",
            default_principal()
        ));
    }
    eprintln!("error: {msg}");
    ExitCode::from(1)
}
