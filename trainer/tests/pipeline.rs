//! The input pipeline: the evaluation path is kdruntime's letterbox bit for bit, augmentation is
//! bounded and deterministic, and batches carry the right images and targets.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use kdruntime::letterbox::{letterbox, Image, OutputFormat, PixelFormat};
use kdtrainer::config::Augmentation;
use kdtrainer::data::import::{fashion_mnist, mosaic};
use kdtrainer::data::{Dataset, Mode, ModeChoice, Split};
use kdtrainer::pipeline::augment::{self, Draws};
use kdtrainer::pipeline::{eval_input, Loader, LoaderOptions, Normalization};
use tch::Tensor;

fn repo(p: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(p)
}

/// Small real data sets, imported once per test binary with the project's importers.
struct Sets {
    _dir: tempfile::TempDir,
    fashion: PathBuf,
    mosaic: PathBuf,
}

fn sets() -> &'static Sets {
    static SETS: OnceLock<Sets> = OnceLock::new();
    SETS.get_or_init(|| {
        let raw = repo("data/raw/fashion-mnist");
        assert!(
            raw.is_dir(),
            "{} missing: run scripts/setup.sh data",
            raw.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let fashion = dir.path().join("fashion");
        let opts = fashion_mnist::Options {
            limit: Some(40),
            seed: 3,
            val: 6000,
        };
        fashion_mnist::import(&raw, &fashion, &opts).unwrap();
        let mosaic = dir.path().join("mosaic");
        let opts = mosaic::Options {
            limit: Some(24),
            seed: 5,
            ..Default::default()
        };
        mosaic::import(&raw, &mosaic, &opts).unwrap();
        Sets {
            _dir: dir,
            fashion,
            mosaic,
        }
    })
}

fn aug() -> Augmentation {
    Augmentation {
        hflip: true,
        rotation_turns: 0.03,
        zoom: 0.1,
        brightness: 0.15,
        contrast: 0.15,
        saturation: 0.15,
    }
}

fn opts(size: usize, batch: usize) -> LoaderOptions {
    let mut o = LoaderOptions::new(size, batch, Normalization::STUDENT);
    o.quiet = true;
    o.workers = 2;
    o
}

fn floats(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.flatten(0, -1)).unwrap()
}

/// The reference: kdruntime's letterbox called directly on the `image` crate's RGBA decode
/// (a different source layout than the pipeline's RGB/grey one).
fn reference_rgba(path: &Path, size: usize) -> Vec<u8> {
    let img = image::open(path).unwrap().to_rgba8();
    let (w, h) = (img.width() as usize, img.height() as usize);
    let src = Image::packed(img.as_raw(), h, w, PixelFormat::Rgba).unwrap();
    let mut out = vec![0u8; size * size * 3];
    letterbox(&src, size, size, OutputFormat::Rgb, &mut out).unwrap();
    out
}

#[test]
fn eval_input_is_kdruntime_letterbox_for_real_photos() {
    for name in [
        "china.jpg",
        "flower.jpg",
        "astronaut.png",
        "chelsea.png",
        "coffee.png",
        "rocket.jpg",
        "retina.jpg",
    ] {
        let path = repo("data/raw/photos").join(name);
        for size in [32, 96] {
            let got = eval_input(&path, size).unwrap();
            assert_eq!(got, reference_rgba(&path, size), "{name} at {size}");
        }
    }
}

#[test]
fn grey_pngs_are_replicated_exactly() {
    let ds = Dataset::load(&sets().fashion, ModeChoice::Auto).unwrap();
    for e in ds.split(Split::Test).iter().take(5) {
        let path = ds.images_dir().join(&e.image);
        let grey = image::open(&path).unwrap();
        assert!(matches!(grey, image::DynamicImage::ImageLuma8(_)));
        // By hand: each grey byte becomes (g, g, g); then the letterbox of that RGB image.
        let rgb: Vec<u8> = grey
            .to_luma8()
            .as_raw()
            .iter()
            .flat_map(|&g| [g, g, g])
            .collect();
        let src = Image::packed(&rgb, 28, 28, PixelFormat::Rgb).unwrap();
        let mut want = vec![0u8; 32 * 32 * 3];
        letterbox(&src, 32, 32, OutputFormat::Rgb, &mut want).unwrap();
        assert_eq!(eval_input(&path, 32).unwrap(), want, "{}", e.image);
        assert_eq!(reference_rgba(&path, 32), want);
    }
}

#[test]
fn decode_errors_name_the_file() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("bad.png");
    std::fs::write(&p, b"not an image").unwrap();
    let e = format!("{:#}", eval_input(&p, 32).unwrap_err());
    assert!(e.contains("bad.png"), "{e}");
    let e = format!(
        "{:#}",
        eval_input(&d.path().join("none.png"), 32).unwrap_err()
    );
    assert!(e.contains("none.png: cannot read"), "{e}");
}

#[test]
fn normalisation_by_hand() {
    // A 1x2 image: pixel 0 = (0, 127, 255), pixel 1 = (255, 128, 1); output is CHW.
    let px = [0u8, 127, 255, 255, 128, 1];
    let mut out = [0f32; 6];
    Normalization::STUDENT.apply(&px, &mut out).unwrap();
    let want = [
        -127.0 / 128.0,
        128.0 / 128.0,
        0.0,
        1.0 / 128.0,
        128.0 / 128.0,
        -126.0 / 128.0,
    ];
    assert_eq!(out, want);
    Normalization::IMAGENET.apply(&px, &mut out).unwrap();
    // (0/255 - 0.485) / 0.229 = -2.117904, (128/255 - 0.456) / 0.224 = 0.2051821,
    // (1/255 - 0.406) / 0.225 = -1.7870152 (computed by hand in 0..1 units).
    for (got, want) in [
        (out[0], -2.117904),
        (out[3], 0.2051821),
        (out[5], -1.7870152),
    ] {
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    }
    assert!(Normalization::STUDENT.apply(&px, &mut [0f32; 5]).is_err());
    let bad = Normalization {
        mean: [0.0; 3],
        std: [1.0, 0.0, 1.0],
    };
    assert!(bad
        .apply(&px, &mut out)
        .unwrap_err()
        .to_string()
        .contains("std[1]"));
}

fn photo(size: usize) -> Vec<u8> {
    eval_input(&repo("data/raw/photos/chelsea.png"), size).unwrap()
}

fn at(img: &[u8], size: usize, y: usize, x: usize) -> [u8; 3] {
    let i = (y * size + x) * 3;
    [img[i], img[i + 1], img[i + 2]]
}

const IDENTITY: Draws = Draws {
    flip: false,
    turns: 0.0,
    scale: 1.0,
    brightness: 1.0,
    contrast: 1.0,
    saturation: 1.0,
};

#[test]
fn neutral_augmentation_is_the_identity() {
    let s = 48;
    let orig = photo(s);
    let mut img = orig.clone();
    augment::apply(&mut img, s, &IDENTITY).unwrap();
    assert_eq!(img, orig);
    // All ranges 0 (flip off): identity whatever the seed.
    let zero = Augmentation {
        hflip: false,
        rotation_turns: 0.0,
        zoom: 0.0,
        brightness: 0.0,
        contrast: 0.0,
        saturation: 0.0,
    };
    for seed in 0..5 {
        let mut img = orig.clone();
        augment::augment(&mut img, s, &zero, seed).unwrap();
        assert_eq!(img, orig);
    }
}

#[test]
fn hflip_is_an_exact_mirror() {
    let s = 33;
    let orig = photo(s);
    let mut img = orig.clone();
    augment::apply(
        &mut img,
        s,
        &Draws {
            flip: true,
            ..IDENTITY
        },
    )
    .unwrap();
    for y in 0..s {
        for x in 0..s {
            assert_eq!(at(&img, s, y, x), at(&orig, s, y, s - 1 - x));
        }
    }
    assert_ne!(img, orig);
}

#[test]
fn quarter_turn_and_zoom_out_geometry() {
    let s = 32;
    let orig = photo(s);
    // A quarter turn maps pixel centres onto pixel centres: out[y][x] = src[S-1-x][y].
    let rot = augment::warp(&orig, s, 0.25, 1.0);
    for y in 0..s {
        for x in 0..s {
            assert_eq!(at(&rot, s, y, x), at(&orig, s, s - 1 - x, y), "({y},{x})");
        }
    }
    // Zoom 0.5 shrinks the content to the central half: the outer 7-pixel ring samples outside
    // the source (centre 16, (0.5 + k - 16) / 0.5 + 16 - 0.5 < -1 for k < 8 - 0.75) and is black.
    let small = augment::warp(&orig, s, 0.0, 0.5);
    for y in 0..s {
        for x in 0..s {
            if y < 7 || x < 7 || y >= s - 7 || x >= s - 7 {
                assert_eq!(at(&small, s, y, x), [0, 0, 0], "({y},{x})");
            }
        }
    }
    // Zoom 2 on the centre: output (16, 16) samples source (15.75, 15.75).
    let big = augment::warp(&orig, s, 0.0, 2.0);
    let centre: Vec<f64> = (0..3)
        .map(|c| {
            let p = |y, x| f64::from(at(&orig, s, y, x)[c]);
            0.25 * 0.25 * p(15, 15)
                + 0.75 * 0.25 * p(15, 16)
                + 0.25 * 0.75 * p(16, 15)
                + 0.75 * 0.75 * p(16, 16)
        })
        .collect();
    for (got, want) in at(&big, s, 16, 16).iter().zip(&centre) {
        assert_eq!(f64::from(*got), want.round());
    }
}

#[test]
fn colour_jitter_by_hand() {
    // Two pixels: (100, 50, 200) and (0, 0, 0).
    let base = [100u8, 50, 200, 0, 0, 0];
    let mut img = base;
    augment::jitter(&mut img, 2.0, 1.0, 1.0);
    assert_eq!(img, [200, 100, 255, 0, 0, 0]); // 400 clamps to 255
    let mut img = base;
    augment::jitter(&mut img, 1.0, 1.0, 0.0);
    // Saturation 0: luma 0.299*100 + 0.587*50 + 0.114*200 = 82.15 -> 82 in every channel.
    assert_eq!(img, [82, 82, 82, 0, 0, 0]);
    let mut img = base;
    augment::jitter(&mut img, 1.0, 0.0, 1.0);
    // Contrast 0: everything becomes the mean luma (82.15 + 0) / 2 = 41.075 -> 41.
    assert_eq!(img, [41; 6]);
    let mut img = base;
    augment::jitter(&mut img, 1.0, 1.0, 1.0);
    assert_eq!(img, base);
}

#[test]
fn augmentation_ranges_hold_for_drawn_values() {
    let a = aug();
    let mut flips = 0;
    for i in 0..2000 {
        let d = Draws::sample(&a, &mut kdtrainer::data::import::SplitMix64::new(i));
        assert!(d.turns.abs() <= 0.03 && (d.scale - 1.0).abs() <= 0.1);
        for f in [d.brightness, d.contrast, d.saturation] {
            assert!((0.85..=1.15).contains(&f), "{f}");
        }
        flips += usize::from(d.flip);
    }
    assert!((850..1150).contains(&flips), "{flips} flips of 2000");
    let no_flip = Augmentation { hflip: false, ..a };
    assert!((0..100).all(|i| !Draws::sample(
        &no_flip,
        &mut kdtrainer::data::import::SplitMix64::new(i)
    )
    .flip));
}

fn epoch_batches(l: &Loader, e: usize) -> Vec<(Vec<usize>, Vec<f32>, Vec<f32>)> {
    l.epoch(e)
        .map(|b| {
            let b = b.unwrap();
            (b.indices, floats(&b.images), floats(&b.targets))
        })
        .collect()
}

#[test]
fn augmented_epochs_are_deterministic() {
    let ds = Dataset::load(&sets().fashion, ModeChoice::Auto).unwrap();
    let mut o = opts(32, 16);
    o.shuffle = true;
    o.augment = Some(aug());
    o.seed = 11;
    let a = Loader::new(&ds, Split::Train, o.clone()).unwrap();
    let first = epoch_batches(&a, 0);
    assert_eq!(first, epoch_batches(&a, 0));
    // Other worker counts and the cache give the same bytes.
    let mut o1 = o.clone();
    o1.workers = 1;
    o1.cache = true;
    o1.prefetch = 1;
    let b = Loader::new(&ds, Split::Train, o1).unwrap();
    assert_eq!(first, epoch_batches(&b, 0));
    assert_eq!(first, epoch_batches(&b, 0)); // second pass from the cache
                                             // Another epoch: another order and other augmentations of the same image.
    let second = epoch_batches(&a, 1);
    assert_ne!(first[0].0, second[0].0);
    assert_ne!(a.sample(0, 0).unwrap(), a.sample(0, 1).unwrap());
    assert_eq!(a.sample(3, 2).unwrap(), b.sample(3, 2).unwrap());
    // Another seed: other augmentations.
    let c = Loader::new(&ds, Split::Train, LoaderOptions { seed: 12, ..o }).unwrap();
    assert_ne!(a.sample(0, 0).unwrap(), c.sample(0, 0).unwrap());
    // The sorted indices of an epoch are the whole split, once each.
    let mut all: Vec<usize> = first.iter().flat_map(|b| b.0.clone()).collect();
    all.sort_unstable();
    assert_eq!(all, (0..a.len()).collect::<Vec<_>>());
}

#[test]
fn multi_class_batches_are_eval_inputs_with_one_hot_targets() {
    let ds = Dataset::load(&sets().fashion, ModeChoice::Auto).unwrap();
    assert_eq!(ds.mode, Mode::MultiClass);
    let entries = ds.split(Split::Val);
    assert_eq!(entries.len(), 40);
    let l = Loader::new(&ds, Split::Val, opts(32, 16)).unwrap();
    assert_eq!(l.num_batches(), 3);
    let batches: Vec<_> = l.epoch(0).map(Result::unwrap).collect();
    let sizes: Vec<i64> = batches.iter().map(|b| b.images.size()[0]).collect();
    assert_eq!(sizes, [16, 16, 8]);
    for b in &batches {
        let n = b.indices.len() as i64;
        assert_eq!(b.images.size(), [n, 3, 32, 32]);
        assert_eq!(b.targets.size(), [n, 10]);
        let imgs = floats(&b.images);
        let tg = floats(&b.targets);
        let ct = Vec::<i64>::try_from(b.class_targets().unwrap()).unwrap();
        for (k, &i) in b.indices.iter().enumerate() {
            let e = &entries[i];
            let class = ds.class_index(&e.labels[0]).unwrap();
            assert_eq!(b.labels[k], [class]);
            assert_eq!(ct[k], class as i64);
            let row = &tg[k * 10..(k + 1) * 10];
            for (c, &v) in row.iter().enumerate() {
                assert_eq!(v, if c == class { 1.0 } else { 0.0 });
            }
            // The batch image is the normalised eval input, CHW.
            let u8s = eval_input(&ds.images_dir().join(&e.image), 32).unwrap();
            let img = &imgs[k * 3072..(k + 1) * 3072];
            for (j, px) in u8s.chunks_exact(3).enumerate() {
                for c in 0..3 {
                    assert_eq!(img[c * 1024 + j], (f32::from(px[c]) - 127.0) / 128.0);
                }
            }
        }
    }
    let mut o = opts(32, 16);
    o.drop_last = true;
    let l = Loader::new(&ds, Split::Val, o).unwrap();
    assert_eq!(l.num_batches(), 2);
    assert_eq!(l.epoch(0).count(), 2);
}

#[test]
fn multi_label_batches_have_multi_hot_targets() {
    let ds = Dataset::load(&sets().mosaic, ModeChoice::Auto).unwrap();
    assert_eq!(ds.mode, Mode::MultiLabel);
    let c = ds.classes.len();
    let entries = ds.split(Split::Train);
    let l = Loader::new(&ds, Split::Train, opts(56, 10)).unwrap();
    let (mut several, mut empty) = (0, 0);
    for b in l.epoch(0) {
        let b = b.unwrap();
        let tg = floats(&b.targets);
        assert_eq!(b.images.size()[1..], [3, 56, 56]);
        for (k, &i) in b.indices.iter().enumerate() {
            let want: Vec<f32> = (0..c)
                .map(|j| {
                    let has = entries[i].labels.iter().any(|n| n == &ds.classes[j]);
                    if has {
                        1.0
                    } else {
                        0.0
                    }
                })
                .collect();
            assert_eq!(&tg[k * c..(k + 1) * c], want.as_slice());
            several += usize::from(entries[i].labels.len() > 1);
            empty += usize::from(entries[i].labels.is_empty());
        }
        if b.labels.iter().any(|l| l.len() != 1) {
            assert!(b.class_targets().is_err());
        }
    }
    assert!(
        several > 0,
        "the mosaic subset should have multi-label images"
    );
    assert!(
        empty > 0,
        "the mosaic subset should have garment-free images"
    );
}

#[test]
fn a_missing_image_is_an_error_naming_it_and_ends_the_epoch() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("images")).unwrap();
    std::fs::copy(
        repo("data/raw/photos/coffee.png"),
        d.path().join("images/a.png"),
    )
    .unwrap();
    std::fs::write(d.path().join("train.txt"), "a.png,x\nmissing.png,y\n").unwrap();
    std::fs::write(d.path().join("val.txt"), "").unwrap();
    std::fs::write(d.path().join("test.txt"), "").unwrap();
    let ds = Dataset::load(d.path(), ModeChoice::Auto).unwrap();
    let l = Loader::new(&ds, Split::Train, opts(16, 1)).unwrap();
    let out: Vec<_> = l.epoch(0).collect();
    assert_eq!(out.len(), 2);
    assert!(out[0].is_ok());
    let e = format!("{:#}", out[1].as_ref().unwrap_err());
    assert!(e.contains("missing.png"), "{e}");
    assert!(Loader::new(&ds, Split::Train, opts(16, 0)).is_err());
    // Dropping an epoch early stops its producer (the test would hang otherwise).
    let mut it = l.epoch(1);
    assert!(it.next().unwrap().is_ok());
    drop(it);
}
