//! Where a subcommand writes: the process's standard streams, or buffers in tests.

use std::io::Write;

/// The output streams of one command.
pub struct Streams<'a> {
    /// Results.
    pub stdout: &'a mut dyn Write,
    /// Errors and diagnostics.
    pub stderr: &'a mut dyn Write,
}

/// Exit status: the plugin's outcome was not `ok`, or the plugin is not valid.
pub const EXIT_FAILED: u8 = 1;
/// Exit status: wrong arguments, or a plugin that cannot be loaded where one is needed.
pub const EXIT_USAGE: u8 = 2;
