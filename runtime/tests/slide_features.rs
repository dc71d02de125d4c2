//! Whole-slide → features: the TIFF reader on the real Aperio slide (checked against tifffile),
//! on synthetic stripped TIFFs, the ONNX tile encoder, and the `rnafm-features` binary.

mod slide_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use image::RgbImage;
use ndarray::{Array2, Array3};
use ndarray_npy::{NpzReader, ReadNpyExt};
use rnafm_runtime::ort_env::{DeviceChoice, SessionFactory, SessionOptions};
use rnafm_runtime::slide::encoder::{Normalization, TileEncoder, to_tensor};
use rnafm_runtime::slide::tiff_reader::{MppSource, Slide};
use slide_support::{test_slide, tiny_encoder, tiny_weights};

fn cpu_factory() -> SessionFactory {
    SessionFactory::new(SessionOptions {
        device: DeviceChoice::Cpu,
        threads: 1,
    })
    .expect("ONNX Runtime (run scripts/setup.sh)")
}

#[test]
fn aperio_slide_structure_and_mpp() {
    let Some(path) = test_slide() else { return };
    let slide = Slide::open(&path).unwrap();
    assert_eq!(slide.dimensions(), (2220, 2967));
    let (mpp, src) = slide.mpp().unwrap();
    assert_eq!(src, MppSource::Aperio);
    assert!((mpp - 0.499).abs() < 1e-9);
    let l0 = &slide.levels()[0];
    assert_eq!((l0.chunk_width, l0.chunk_height), (240, 240));
    assert!(slide.description().unwrap().contains("AppMag = 20"));
}

/// Compares our decoding with tifffile/libjpeg-turbo's (scripts/slide-pixels-ref).
#[test]
fn aperio_pixels_match_tifffile() {
    let Some(path) = test_slide() else { return };
    let dir = path.parent().unwrap();
    let refs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("cmu_ref_")
        })
        .collect();
    if refs.is_empty() {
        slide_support::missing("the tifffile reference pixels (run scripts/slide-pixels-ref)");
        return;
    }
    let mut slide = Slide::open(&path).unwrap();
    for r in refs {
        // cmu_ref_<name>_<x>_<y>_<w>_<h>.npy
        let stem = r.file_stem().unwrap().to_string_lossy().into_owned();
        let n: Vec<i64> = stem
            .rsplitn(5, '_')
            .take(4)
            .map(|s| s.parse().unwrap())
            .collect();
        let (h, w, y, x) = (n[0], n[1], n[2], n[3]);
        let want = Array3::<u8>::read_npy(std::fs::File::open(&r).unwrap()).unwrap();
        assert_eq!(want.dim(), (h as usize, w as usize, 3));
        let got = slide.read_region(0, x, y, w as u32, h as u32).unwrap();
        let (mut sum, mut max) = (0u64, 0u8);
        for ((yy, xx, c), &v) in want.indexed_iter() {
            let d = got.get_pixel(xx as u32, yy as u32).0[c].abs_diff(v);
            sum += d as u64;
            max = max.max(d);
        }
        let mean = sum as f64 / want.len() as f64;
        eprintln!("{stem}: mean |diff| {mean:.4}, max {max}");
        // Measured: mean 0.003, max 1 (IDCT rounding); a colour-space or tile-placement
        // mistake would differ by tens.
        assert!(mean < 0.05 && max <= 2, "{stem}: mean {mean}, max {max}");
    }
}

/// A tiled deflate pyramid made by tifffile (scripts/slide-pixels-ref): two levels and a
/// stripped label image that must not count as a level.
#[test]
fn tiled_pyramid_levels_and_lossless_pixels() {
    let Some(slide) = test_slide() else { return };
    let p = slide.with_file_name("pyramid_deflate.tif");
    let l1 = slide.with_file_name("pyramid_level1.npy");
    if !p.is_file() || !l1.is_file() {
        slide_support::missing("the pyramid test file (run scripts/slide-pixels-ref)");
        return;
    }
    let mut s = Slide::open(&p).unwrap();
    assert_eq!(s.levels().len(), 2);
    assert_eq!(s.dimensions(), (1024, 768));
    assert!((s.levels()[1].downsample - 2.0).abs() < 1e-9);
    assert_eq!(s.level_for_downsample(1.5), 0);
    assert_eq!(s.level_for_downsample(3.0), 1);
    assert!((s.mpp().unwrap().0 - 0.5).abs() < 1e-9);
    let want = Array3::<u8>::read_npy(std::fs::File::open(&l1).unwrap()).unwrap();
    // Across tile borders (tiles of 128) and up to the right edge.
    let got = s.read_region(1, 100, 200, 412, 150).unwrap();
    for (x, y, px) in got.enumerate_pixels() {
        for c in 0..3 {
            assert_eq!(
                px.0[c],
                want[[200 + y as usize, 100 + x as usize, c]],
                "{x},{y}"
            );
        }
    }
    let (thumb, bad) = s.read_level_reduced(1, 4.0).unwrap();
    assert_eq!((thumb.width(), thumb.height(), bad), (128, 96, 0));
    // Box average of the top-left 4×4 block.
    let m: u32 = (0..4)
        .flat_map(|y| (0..4).map(move |x| (x, y)))
        .map(|(x, y)| want[[y, x, 0]] as u32)
        .sum();
    assert!((thumb.get_pixel(0, 0).0[0] as i32 - ((m + 8) / 16) as i32).abs() <= 1);
}

fn write_tiff(
    path: &Path,
    img: &RgbImage,
    compression: tiff::encoder::Compression,
    cm_px: Option<u32>,
) {
    let f = std::fs::File::create(path).unwrap();
    let mut enc = tiff::encoder::TiffEncoder::new(f)
        .unwrap()
        .with_compression(compression);
    let mut im = enc
        .new_image::<tiff::encoder::colortype::RGB8>(img.width(), img.height())
        .unwrap();
    if let Some(px) = cm_px {
        im.resolution(
            tiff::tags::ResolutionUnit::Centimeter,
            tiff::encoder::Rational { n: px, d: 1 },
        );
    }
    im.write_data(img.as_raw()).unwrap();
}

/// A 600×400 synthetic slide: white glass with a textured pink blob on the left half.
fn synthetic() -> RgbImage {
    RgbImage::from_fn(600, 400, |x, y| {
        if x < 300 {
            let t = ((x * 7 + y * 13) % 31) as u8;
            image::Rgb([180 + t, 90 + 2 * t, 160 + t])
        } else {
            image::Rgb([244, 244, 246])
        }
    })
}

#[test]
fn stripped_tiff_lzw_deflate_none_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let img = synthetic();
    for (name, c) in [
        ("none", tiff::encoder::Compression::Uncompressed),
        ("lzw", tiff::encoder::Compression::Lzw),
        (
            "deflate",
            tiff::encoder::Compression::Deflate(tiff::encoder::DeflateLevel::Fast),
        ),
    ] {
        let p = dir.path().join(format!("{name}.tif"));
        // 20000 px/cm = 0.5 µm/px.
        write_tiff(&p, &img, c, Some(20_000));
        let mut s = Slide::open(&p).unwrap();
        let (mpp, src) = s.mpp().unwrap();
        assert_eq!(src, MppSource::ResolutionTags);
        assert!((mpp - 0.5).abs() < 1e-9, "{name}: {mpp}");
        let got = s.read_region(0, 250, 100, 100, 50).unwrap();
        for (x, y, p) in got.enumerate_pixels() {
            assert_eq!(p, img.get_pixel(250 + x, 100 + y), "{name} at {x},{y}");
        }
        // Outside the image is white.
        let out = s.read_region(0, 590, 390, 20, 20).unwrap();
        assert_eq!(out.get_pixel(15, 15).0, [255, 255, 255]);
        assert_eq!(out.get_pixel(5, 5), img.get_pixel(595, 395));
    }
}

#[test]
fn tiny_encoder_matches_hand_computation() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("enc.onnx");
    std::fs::write(&model, tiny_encoder(16)).unwrap();
    let norm = Normalization::default();
    let mut enc = TileEncoder::load(&model, &mut cpu_factory(), norm).unwrap();
    assert_eq!(enc.input_size(), None);
    let tiles: Vec<RgbImage> = (0..5u32)
        .map(|k| {
            RgbImage::from_fn(24, 24, |x, y| {
                image::Rgb([
                    (x * 9 + k * 40) as u8,
                    (y * 7) as u8,
                    ((x + y) * 5 + k) as u8,
                ])
            })
        })
        .collect();
    let got = enc.encode(&tiles).unwrap();
    assert_eq!(got.dim(), (5, 16));
    let x = to_tensor(&tiles, norm);
    let w = Array2::from_shape_vec((6, 16), tiny_weights(16)).unwrap();
    for i in 0..5 {
        let mut f = [0f32; 6];
        for c in 0..3 {
            let plane = x.slice(ndarray::s![i, c, .., ..]);
            f[c] = plane.mean().unwrap();
            f[c + 3] = plane.mapv(|v| v * v).mean().unwrap();
        }
        for j in 0..16 {
            let want: f32 = (0..6).map(|k| f[k] * w[[k, j]]).sum();
            assert!(
                (got[[i, j]] - want).abs() < 1e-3 * (1.0 + want.abs()),
                "{i},{j}: {} vs {want}",
                got[[i, j]]
            );
        }
    }
    // Batch size does not change a tile's features.
    let one = enc.encode(&tiles[2..3]).unwrap();
    for j in 0..16 {
        assert!((one[[0, j]] - got[[2, j]]).abs() < 1e-4);
    }
}

fn features_bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rnafm-features"))
}

#[test]
fn cli_on_aperio_slide_is_deterministic() {
    let Some(slide) = test_slide() else { return };
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("enc.onnx");
    std::fs::write(&model, tiny_encoder(16)).unwrap();
    let run = |out: &Path| {
        let o = features_bin()
            .arg(&slide)
            .args(["--encoder", model.to_str().unwrap()])
            .args([
                "--tile",
                "128",
                "--clusters",
                "4",
                "--max-tiles",
                "60",
                "--seed",
                "3",
                "--device",
                "cpu",
            ])
            .args(["--out", out.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    let a = dir.path().join("a/slide_features.npy");
    let b = dir.path().join("b/slide_features.npy");
    run(&a);
    run(&b);
    let feats = Array2::<f32>::read_npy(std::fs::File::open(&a).unwrap()).unwrap();
    assert_eq!(feats.dim(), (4, 16));
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());

    let mut z =
        NpzReader::new(std::fs::File::open(dir.path().join("a/slide_tiles.npz")).unwrap()).unwrap();
    let coords: Array2<i64> = z.by_name("coords").unwrap();
    let tf: Array2<f32> = z.by_name("features").unwrap();
    let cl: ndarray::Array1<i64> = z.by_name("cluster").unwrap();
    let n = coords.nrows();
    assert!(n > 4 && n <= 60, "{n} tiles");
    assert_eq!(tf.dim(), (n, 16));
    assert!(cl.iter().all(|&c| (0..4).contains(&c)));
    // 128 px at 0.5 µm/px = 128.26 level-0 px at 0.499 µm/px; corners lie on that grid.
    let size0 = 128.0 * 0.5 / 0.499;
    for r in coords.rows() {
        assert!(r[0] >= 0 && r[0] as f64 + size0 <= 2221.0 && r[1] as f64 + size0 <= 2968.0);
        let col = r[0] as f64 / size0;
        assert!((col - col.round()).abs() < 0.01, "x {} off grid", r[0]);
    }
    // Cluster means are the means of their tiles.
    for k in 0..4 {
        let members: Vec<usize> = (0..n).filter(|&i| cl[i] == k as i64).collect();
        for j in 0..16 {
            let m = members.iter().map(|&i| tf[[i, j]] as f64).sum::<f64>() / members.len() as f64;
            assert!((m - feats[[k, j]] as f64).abs() < 1e-3 * (1.0 + m.abs()));
        }
    }
    let thumb = image::open(dir.path().join("a/slide_thumbnail.png")).unwrap();
    assert!(thumb.width() > 50 && thumb.height() > 50);

    #[cfg(feature = "hdf5")]
    {
        // --out X.h5: the same tiles in TRIDENT's layout, whose k-means with the same seed (what
        // rnafm-run and rnafm-train do with it) gives the .npy's means exactly.
        let h = dir.path().join("c/slide.h5");
        run(&h);
        assert!(!dir.path().join("c/slide_tiles.npz").exists());
        let t = rnafm_runtime::features::read_h5_tiles(&h).unwrap();
        assert_eq!(t.features, tf);
        assert_eq!(t.coords.as_ref(), Some(&coords));
        assert_eq!(t.geometry.patch_size, Some(128.0));
        assert!((t.geometry.patch_size_level0.unwrap() - size0).abs() < 1e-9);
        assert!((t.geometry.target_magnification.unwrap() - 20.0).abs() < 1e-9);
        let means = rnafm_runtime::cluster_means::cluster_means(t.features, 4, 3, &h).unwrap();
        assert_eq!(means.means, feats);
    }
}

#[test]
fn missing_mpp_names_the_flag_and_override_works() {
    let dir = tempfile::tempdir().unwrap();
    let tif = dir.path().join("plain.tif");
    write_tiff(&tif, &synthetic(), tiff::encoder::Compression::Lzw, None);
    let model = dir.path().join("enc.onnx");
    std::fs::write(&model, tiny_encoder(8)).unwrap();
    let out = dir.path().join("f.npy");
    let base = |extra: &[&str]| {
        features_bin()
            .arg(&tif)
            .args([
                "--encoder",
                model.to_str().unwrap(),
                "--tile",
                "64",
                "--clusters",
                "2",
                "--device",
                "cpu",
            ])
            .args(["--out", out.to_str().unwrap()])
            .args(extra)
            .output()
            .unwrap()
    };
    let o = base(&[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("--mpp") && err.contains("plain.tif"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    let o = base(&["--mpp", "0.5"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut z =
        NpzReader::new(std::fs::File::open(dir.path().join("f_tiles.npz")).unwrap()).unwrap();
    let coords: Array2<i64> = z.by_name("coords").unwrap();
    // Tissue is the left half only: 4 columns × 6 rows of 64 px tiles.
    assert_eq!(coords.nrows(), 24);
    assert!(coords.column(0).iter().all(|&x| x + 64 <= 300));
}

#[test]
fn corrupt_file_is_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.svs");
    std::fs::write(&bad, b"II*\0garbage that is not a tiff").unwrap();
    let model = dir.path().join("enc.onnx");
    std::fs::write(&model, tiny_encoder(8)).unwrap();
    let o = features_bin()
        .arg(&bad)
        .args(["--encoder", model.to_str().unwrap(), "--mpp", "0.5"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("bad.svs") && err.trim().lines().count() == 1,
        "{err}"
    );
}

/// A slide with one JPEG tile wiped: the tiles over it are skipped and counted, the run
/// still succeeds.
#[test]
fn corrupt_tile_is_skipped_and_counted() {
    let Some(slide) = test_slide() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(&slide).unwrap();
    let (off, len) = {
        let mut d = tiff::decoder::Decoder::new(std::io::Cursor::new(&bytes)).unwrap();
        let offs = d.get_tag_u64_vec(tiff::tags::Tag::TileOffsets).unwrap();
        let lens = d.get_tag_u64_vec(tiff::tags::Tag::TileByteCounts).unwrap();
        // Row 6, column 4 of the 10-wide tile grid: the middle of the tissue.
        (offs[64] as usize, lens[64] as usize)
    };
    bytes[off..off + len].fill(0);
    let bad = dir.path().join("one_bad_tile.svs");
    std::fs::write(&bad, &bytes).unwrap();
    let model = dir.path().join("enc.onnx");
    std::fs::write(&model, tiny_encoder(8)).unwrap();
    let out = dir.path().join("slide_features.npy");
    let o = features_bin()
        .arg(&bad)
        .args([
            "--encoder",
            model.to_str().unwrap(),
            "--tile",
            "128",
            "--clusters",
            "3",
            "--device",
            "cpu",
        ])
        .args(["--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let n: usize = err
        .split(" corrupt skipped")
        .next()
        .and_then(|s| s.rsplit('(').next())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("no count in {err}"));
    assert!((1..=9).contains(&n), "{n} corrupt tiles: {err}");
}

/// A slide cut short (an interrupted download) is refused whole on one line, naming where
/// the data should end, instead of reading the missing tiles as blank.
#[test]
fn truncated_slide_is_one_line_error() {
    let Some(slide) = test_slide() else { return };
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(&slide).unwrap();
    // where the tile data of the tiled images ends (the directories come before it)
    let end = {
        let mut d = tiff::decoder::Decoder::new(std::io::Cursor::new(&bytes)).unwrap();
        let mut end = 0u64;
        loop {
            if let (Ok(offs), Ok(lens)) = (
                d.get_tag_u64_vec(tiff::tags::Tag::TileOffsets),
                d.get_tag_u64_vec(tiff::tags::Tag::TileByteCounts),
            ) {
                end = end.max(offs.iter().zip(&lens).map(|(o, l)| o + l).max().unwrap());
            }
            if !d.more_images() {
                break;
            }
            d.next_image().unwrap();
        }
        end as usize
    };
    let cut = dir.path().join("cut.svs");
    std::fs::write(&cut, &bytes[..end - 1000]).unwrap();
    let model = dir.path().join("enc.onnx");
    std::fs::write(&model, tiny_encoder(8)).unwrap();
    let o = features_bin()
        .arg(&cut)
        .args(["--encoder", model.to_str().unwrap(), "--device", "cpu"])
        .args(["--out", dir.path().join("f.npy").to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("cut.svs") && err.contains("truncated") && err.trim().lines().count() == 1,
        "{err}"
    );
    assert!(!dir.path().join("f.npy").exists());

    // The directories intact but a tile's data reaching past the end of the file (what a
    // file cut inside its tile data looks like when the directories come first): the
    // first level-0 tile's byte count in IFD0 is made to end past the last byte.
    let mut patched = bytes.clone();
    let u16_at = |b: &[u8], i: usize| u16::from_le_bytes([b[i], b[i + 1]]) as usize;
    let u32_at = |b: &[u8], i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
    assert_eq!(&bytes[..2], b"II", "a little-endian classic TIFF");
    let ifd = u32_at(&bytes, 4) as usize;
    let entry = (0..u16_at(&bytes, ifd))
        .map(|k| ifd + 2 + 12 * k)
        .find(|&e| u16_at(&bytes, e) == 325) // TileByteCounts
        .expect("IFD0 has tile byte counts");
    assert_eq!(u16_at(&bytes, entry + 2), 4, "LONG byte counts");
    let values = u32_at(&bytes, entry + 8) as usize;
    patched[values..values + 4].copy_from_slice(&(bytes.len() as u32).to_le_bytes());
    let long = dir.path().join("long.svs");
    std::fs::write(&long, &patched).unwrap();
    let o = features_bin()
        .arg(&long)
        .args(["--encoder", model.to_str().unwrap(), "--device", "cpu"])
        .args(["--out", dir.path().join("g.npy").to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("long.svs")
            && err.contains("truncated")
            && err.contains("tile 0 ends at byte")
            && err.trim().lines().count() == 1,
        "{err}"
    );
    assert!(!dir.path().join("g.npy").exists());
}
