//! Restores the default SIGPIPE action in the command-line programs.
//!
//! Rust ignores SIGPIPE, so `print!` to a closed pipe (`rnafm-train evaluate … | head -1`)
//! panics with "failed printing to stdout: Broken pipe". A command-line tool should end
//! quietly instead, as `cat` does. Outputs are written to temporary names and renamed, so
//! ending there leaves no partial files.

/// Call first thing in `main`.
pub fn default_on_broken_pipe() {
    #[cfg(unix)]
    // SAFETY: called before any other thread exists; sets the disposition of one signal.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
