//! rnafm exporter.
