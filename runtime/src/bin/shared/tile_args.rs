//! The tiling flags `rnafm-features` and `rnafm-run` share (one file, included by both
//! binaries), and the library options they become. Their defaults are
//! `TileOptions::default()`.

use rnafm_runtime::slide::options::TileOptions;

/// Tiling and pixel-normalisation flags.
#[derive(clap::Args, Debug, Clone)]
pub struct TileArgs {
    /// Level-0 microns per pixel, overriding the file's (needed when the file has none).
    #[arg(long)]
    pub mpp: Option<f64>,
    /// Microns per pixel the tiles are encoded at (0.5 = 20x) [default: rnafm-features 0.5,
    /// rnafm-run the model's].
    #[arg(long)]
    pub tile_mpp: Option<f64>,
    /// Tile size in pixels at --tile-mpp, resized to the encoder's input size if it has one
    /// [default: rnafm-features 256, rnafm-run the model's].
    #[arg(long)]
    pub tile: Option<u32>,
    /// At most this many tissue tiles are encoded, chosen at random (--seed).
    #[arg(long, default_value_t = defaults().max_tiles)]
    pub max_tiles: usize,
    /// Per-channel mean of 0-1 RGB pixels, subtracted before the encoder (ImageNet default).
    #[arg(long, value_delimiter = ',', value_name = "R,G,B", default_values_t = defaults().mean)]
    pub mean: Vec<f32>,
    /// Per-channel standard deviation pixels are divided by (ImageNet default).
    #[arg(long, value_delimiter = ',', value_name = "R,G,B", default_values_t = defaults().std)]
    pub std: Vec<f32>,
    /// Minimum grey-level standard deviation (0-255) of a kept tile.
    #[arg(long, default_value_t = defaults().min_contrast)]
    pub min_contrast: f32,
}

impl From<TileArgs> for TileOptions {
    fn from(a: TileArgs) -> Self {
        TileOptions {
            mpp: a.mpp,
            tile_mpp: a.tile_mpp,
            tile: a.tile,
            max_tiles: a.max_tiles,
            mean: a.mean,
            std: a.std,
            min_contrast: a.min_contrast,
        }
    }
}

fn defaults() -> TileOptions {
    TileOptions::default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        tiles: TileArgs,
    }

    #[test]
    fn flags_default_to_the_library_and_override_it() {
        let d = TileOptions::from(Cli::parse_from(["x"]).tiles);
        assert_eq!(d, TileOptions::default());
        let c = Cli::parse_from(["x", "--tile-mpp", "1", "--tile", "64", "--std", "1,0,1"]);
        let o = TileOptions::from(c.tiles);
        assert_eq!(
            (o.tile_mpp, o.tile, o.std.clone()),
            (Some(1.0), Some(64), vec![1.0, 0.0, 1.0])
        );
        assert!(o.normalization().unwrap_err().contains("--std"));
    }
}
