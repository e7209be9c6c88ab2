//! `teewatch completions SHELL` and `teewatch man`: shell completions and the manual page (roff),
//! generated from the same clap definitions the parser uses, so they never name a flag the
//! binary lacks. Packaging runs `teewatch man > teewatch.1`.

use teewatch::exit;

use super::{CmdError, output};

/// `teewatch completions`.
#[derive(clap::Args)]
pub struct Args {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

pub fn after_help() -> String {
    super::help::after_help(
        &[(
            "bash completions; save them where bash-completion looks, e.g. ~/.local/share/bash-completion/completions/teewatch (exit 0)",
            "teewatch completions bash",
        )],
        &[exit::PASS, exit::USAGE],
    )
}

pub fn man_after_help() -> String {
    super::help::after_help(
        &[(
            "the manual page as roff; read it with `teewatch man | man -l -` (exit 0)",
            "teewatch man",
        )],
        &[exit::PASS, exit::USAGE],
    )
}

/// Prints the completion script for `args.shell` of `command` (the whole command line).
pub fn completions(args: &Args, mut command: clap::Command) -> Result<u8, CmdError> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "teewatch", &mut script);
    output::print(&String::from_utf8_lossy(&script))?;
    Ok(exit::PASS)
}

/// Prints the manual page of `command` (the whole command line), with every subcommand's
/// options and help text in it.
pub fn man(command: clap::Command) -> Result<u8, CmdError> {
    let command = command.version(super::VERSION);
    let mut page = Vec::new();
    let man = clap_mangen::Man::new(command.clone());
    man.render_title(&mut page)
        .and_then(|()| man.render_name_section(&mut page))
        .and_then(|()| man.render_synopsis_section(&mut page))
        .and_then(|()| man.render_description_section(&mut page))
        .and_then(|()| man.render_options_section(&mut page))
        .and_then(|()| man.render_subcommands_section(&mut page))
        .map_err(|e| CmdError::software(format!("rendering the manual page: {e}")))?;
    // Each command's own options, examples and exit codes, as `teewatch CMD --help` shows them.
    for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
        render_command(&mut page, &["teewatch"], sub)?;
    }
    man.render_extra_section(&mut page)
        .and_then(|()| man.render_version_section(&mut page))
        .and_then(|()| man.render_authors_section(&mut page))
        .map_err(|e| CmdError::software(format!("rendering the manual page: {e}")))?;
    output::print(&String::from_utf8_lossy(&page))?;
    Ok(exit::PASS)
}

/// One subcommand's section: its usage and `--help` text (with examples and exit codes), then
/// its own subcommands.
fn render_command(
    page: &mut Vec<u8>,
    parents: &[&str],
    command: &clap::Command,
) -> Result<(), CmdError> {
    let mut path: Vec<&str> = parents.to_vec();
    path.push(command.get_name());
    let name = path.join(" ");
    let mut command = command.clone().bin_name(&name);
    let help = command.render_long_help().to_string();
    page.extend_from_slice(format!(".SH \"{}\"\n.nf\n", name.to_uppercase()).as_bytes());
    for line in help.lines() {
        page.extend_from_slice(roff_line(line).as_bytes());
        page.push(b'\n');
    }
    page.extend_from_slice(b".fi\n");
    for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
        render_command(page, &path, sub)?;
    }
    Ok(())
}

/// A line of plain text made safe for roff: backslashes escaped, and a leading `.` or `'`
/// (a roff request) guarded.
fn roff_line(line: &str) -> String {
    let escaped = line.replace('\\', "\\e");
    if escaped.starts_with('.') || escaped.starts_with('\'') {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}
