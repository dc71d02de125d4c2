//! One logging setup for every rnafm command: `tracing` to stderr, `-v` for info, `-vv`
//! for debug, `RUST_LOG` overriding both; colours only on a terminal.

/// Installs the subscriber; `verbose` is the count of `-v` flags.
pub fn init(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        // ONNX Runtime's own info log is allocator chatter.
        1 => "info,ort=warn",
        _ => "debug,ort=info",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}
