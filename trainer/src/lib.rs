//! rnafm trainer.
