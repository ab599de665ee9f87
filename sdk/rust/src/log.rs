//! Log lines sent to the host, which tags them with the plugin's name and, during a
//! delivery, the queue, the message id and the attempt.
//!
//! ```no_run
//! use courier_sdk::log;
//!
//! log::info!("sending to {}", "ada@example.com");
//! log::warn!("slow response: {} ms", 1200);
//! log::write(log::Level::Debug, "plain text, no formatting");
//! ```
//!
//! Lines printed with `println!` and `eprintln!` become log lines too (`info` and `warn`);
//! these macros say the level explicitly.

use crate::wit::host;

/// The severity of a log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Very detailed tracing.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected that did not stop the work.
    Warn,
    /// Something failed.
    Error,
}

/// Writes one log line at `level`.
pub fn write(level: Level, message: &str) {
    let level = match level {
        Level::Trace => host::Level::Trace,
        Level::Debug => host::Level::Debug,
        Level::Info => host::Level::Info,
        Level::Warn => host::Level::Warn,
        Level::Error => host::Level::Error,
    };
    host::log(level, message);
}

#[doc(hidden)]
#[macro_export]
macro_rules! __courier_log {
    ($level:ident, $($argument:tt)+) => {
        $crate::log::write($crate::log::Level::$level, &::std::format!($($argument)+))
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __courier_trace {
    ($($argument:tt)+) => { $crate::__courier_log!(Trace, $($argument)+) };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __courier_debug {
    ($($argument:tt)+) => { $crate::__courier_log!(Debug, $($argument)+) };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __courier_info {
    ($($argument:tt)+) => { $crate::__courier_log!(Info, $($argument)+) };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __courier_warn {
    ($($argument:tt)+) => { $crate::__courier_log!(Warn, $($argument)+) };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __courier_error {
    ($($argument:tt)+) => { $crate::__courier_log!(Error, $($argument)+) };
}

/// Logs a line at [`Level::Trace`], formatted like [`format!`].
#[doc(inline)]
pub use crate::__courier_trace as trace;

/// Logs a line at [`Level::Debug`], formatted like [`format!`].
#[doc(inline)]
pub use crate::__courier_debug as debug;

/// Logs a line at [`Level::Info`], formatted like [`format!`].
///
/// ```no_run
/// courier_sdk::log::info!("sending welcome email to {} from {}", "ada@example.com", "us@example.com");
/// ```
#[doc(inline)]
pub use crate::__courier_info as info;

/// Logs a line at [`Level::Warn`], formatted like [`format!`].
#[doc(inline)]
pub use crate::__courier_warn as warn;

/// Logs a line at [`Level::Error`], formatted like [`format!`].
#[doc(inline)]
pub use crate::__courier_error as error;
