//! The part of each command's `--help` after the options: examples that run as written (from
//! the repository's root, beside the `sim.toml` that `teewatch sim --write-config` writes; the
//! help test runs every one) and the exit codes the command can end with.
//!
//! An example is a `# comment` line saying what it shows and, last, `(exit N)` or `(until
//! Ctrl-C)`, followed by the command line.

use teewatch::exit;

/// What each exit code means, as the README's table says.
const MEANINGS: [(u8, &str); 9] = [
    (
        exit::PASS,
        "every check passed (or the command did what it was asked)",
    ),
    (exit::FAIL, "at least one check failed"),
    (
        exit::UNKNOWN,
        "none failed, at least one is unknown (could not be decided)",
    ),
    (exit::USAGE, "usage error"),
    (exit::DATA_ERR, "the file is not a readable bundle"),
    (exit::NO_INPUT, "no database at the path given"),
    (exit::SOFTWARE, "internal or fatal runtime error"),
    (
        exit::CANT_CREATE,
        "an output file cannot be created (it exists)",
    ),
    (exit::CONFIG, "invalid configuration"),
];

/// `Examples:` with `examples` (pairs of what it shows and the command line), then `Exit
/// codes:` with `codes`.
pub fn after_help(examples: &[(&str, &str)], codes: &[u8]) -> String {
    let mut out = String::from("Examples:\n");
    for (what, command) in examples {
        out.push_str(&format!("  # {what}\n  {command}\n"));
    }
    out.push_str("\nExit codes:\n");
    for code in codes {
        if let Some((_, meaning)) = MEANINGS.iter().find(|(c, _)| c == code) {
            out.push_str(&format!("  {code:>2}  {meaning}\n"));
        }
    }
    out
}

/// Every exit code, for `teewatch --help`.
pub fn all_codes() -> Vec<u8> {
    MEANINGS.iter().map(|(c, _)| *c).collect()
}

/// `teewatch --help`'s part after the commands.
pub fn top() -> String {
    after_help(
        &[
            (
                "a real bundle judged offline by its own policy (exit 1)",
                "teewatch verify tests/bundles/pmlsdk-dstack-sample.json",
            ),
            (
                "every target of the configuration `teewatch sim` wrote, checked once, live (exit 0)",
                "teewatch check --config sim.toml",
            ),
        ],
        &all_codes(),
    ) + "\nEach command's --help has its own examples; `teewatch man` prints the manual page.\n"
}
