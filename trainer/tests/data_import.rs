//! Real imports (Fashion-MNIST subset, all of digits, a mosaic subset), then validate + stats,
//! checked against counts and pixels read here straight from the raw IDX / CSV files.
//!
//! The raw files come from `scripts/setup.sh` (step `data`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

use kdtrainer::data::import::{digits, fashion_mnist, mosaic};
use kdtrainer::data::validate::validate;
use kdtrainer::data::{Mode, ModeChoice};

fn raw(name: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../data/raw")
        .join(name);
    assert!(
        p.is_dir(),
        "{} is missing: run scripts/setup.sh data",
        p.display()
    );
    p
}

fn gunzip(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// The test's own IDX reading: skip the 16-byte (images) or 8-byte (labels) header.
struct Fmnist {
    train_px: Vec<u8>,
    train_lab: Vec<u8>,
    test_px: Vec<u8>,
    test_lab: Vec<u8>,
}

fn fmnist() -> Fmnist {
    let d = raw("fashion-mnist");
    let f = |n: &str, skip: usize| gunzip(&d.join(n)).split_off(skip);
    Fmnist {
        train_px: f("train-images-idx3-ubyte.gz", 16),
        train_lab: f("train-labels-idx1-ubyte.gz", 8),
        test_px: f("t10k-images-idx3-ubyte.gz", 16),
        test_lab: f("t10k-labels-idx1-ubyte.gz", 8),
    }
}

/// Fashion-MNIST's documented label names (README of zalandoresearch/fashion-mnist).
const FMNIST_NAMES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

fn safe(name: &str) -> String {
    name.replace(['/', ' '], "_")
}

/// (image, labels) of a list file, parsed here with plain string splitting.
fn read_list(path: &Path) -> Vec<(String, Vec<String>)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let (img, labs) = l.split_once(',').unwrap_or((l, ""));
            let labs = labs
                .split('|')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            (img.to_string(), labs)
        })
        .collect()
}

fn gray(path: &Path) -> image::GrayImage {
    image::open(path).unwrap().into_luma8()
}

#[test]
fn fashion_mnist_subset_imports_validates_and_counts_match_the_idx_files() {
    let src = fmnist();
    assert_eq!((src.train_lab.len(), src.test_lab.len()), (60000, 10000));
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("fm");
    let opts = fashion_mnist::Options {
        limit: Some(60),
        seed: 5,
        val: 6000,
    };
    let counts = fashion_mnist::import(&raw("fashion-mnist"), &dir, &opts).unwrap();
    assert_eq!(counts, [60, 60, 60]);

    // Independent counts: labels looked up in the IDX label files by the index in each name.
    let mut want: BTreeMap<&str, BTreeMap<String, usize>> = BTreeMap::new();
    let mut sources: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for split in ["train", "val", "test"] {
        let entries = read_list(&dir.join(format!("{split}.txt")));
        assert_eq!(entries.len(), 60);
        for (img, labs) in entries {
            let (file, idx) = img.strip_suffix(".png").unwrap().split_once('_').unwrap();
            let i: usize = idx.parse().unwrap();
            assert_eq!(file, if split == "test" { "test" } else { "train" });
            let (px, lab) = if file == "test" {
                (&src.test_px, &src.test_lab)
            } else {
                (&src.train_px, &src.train_lab)
            };
            let name = safe(FMNIST_NAMES[lab[i] as usize]);
            assert_eq!(labs, std::slice::from_ref(&name), "{img}");
            *want.entry(split).or_default().entry(name).or_default() += 1;
            // The PNG holds exactly the IDX pixels.
            let g = gray(&dir.join("images").join(&img));
            assert_eq!(g.dimensions(), (28, 28));
            assert_eq!(g.as_raw()[..], px[i * 784..(i + 1) * 784], "{img}");
            assert!(sources.entry(split).or_default().insert(img));
        }
    }
    assert!(sources["train"].is_disjoint(&sources["val"]));

    let r = validate(&dir, ModeChoice::Auto).unwrap();
    assert!(r.valid, "{:?}", r.errors);
    assert_eq!(r.images_checked, 180);
    assert_eq!(r.image_sizes["28x28"], 180);
    assert_eq!(r.stats.mode, Mode::MultiClass);
    let vocab: Vec<String> = want
        .values()
        .flat_map(|m| m.keys().cloned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(r.stats.classes, vocab);
    for split in ["train", "val", "test"] {
        let st = &r.stats.splits[split];
        assert_eq!((st.images, st.no_label, st.label_cardinality), (60, 0, 1.0));
        for (class, n) in &st.class_counts {
            assert_eq!(
                *n,
                want[split].get(class).copied().unwrap_or(0),
                "{split} {class}"
            );
        }
    }
    // A rerun with the same seed gives the same lists; another seed another subset.
    let again = out.path().join("fm2");
    fashion_mnist::import(&raw("fashion-mnist"), &again, &opts).unwrap();
    for f in ["train.txt", "val.txt", "test.txt"] {
        assert_eq!(
            std::fs::read(dir.join(f)).unwrap(),
            std::fs::read(again.join(f)).unwrap()
        );
    }
    assert!(fashion_mnist::import(&raw("fashion-mnist"), &again, &opts)
        .unwrap_err()
        .to_string()
        .contains("not empty"));
}

#[test]
fn fashion_mnist_full_carve_sizes() {
    let opts = fashion_mnist::Options {
        limit: None,
        seed: 1,
        val: 6000,
    };
    let [train, val, test] = fashion_mnist::split_indices(60000, 10000, &opts).unwrap();
    assert_eq!((train.len(), val.len(), test.len()), (54000, 6000, 10000));
    let mut all: Vec<usize> = train.iter().chain(&val).copied().collect();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 60000);
    assert!(
        fashion_mnist::split_indices(100, 10, &fashion_mnist::Options { val: 100, ..opts })
            .is_err()
    );
}

#[test]
fn digits_import_all_and_counts_match_the_csv() {
    let text = String::from_utf8(gunzip(&raw("digits").join("digits.csv.gz"))).unwrap();
    let rows: Vec<Vec<u32>> = text
        .lines()
        .map(|l| {
            l.split(',')
                .map(|v| v.trim().parse::<f64>().unwrap() as u32)
                .collect()
        })
        .collect();
    assert_eq!(rows.len(), 1797);
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("digits");
    let counts = digits::import(&raw("digits"), &dir, None, 11).unwrap();
    // 15% of 1797 = 269.55 -> 269 each for val and test.
    assert_eq!(counts, [1797 - 2 * 269, 269, 269]);

    let mut per_class = BTreeMap::<String, usize>::new();
    for r in &rows {
        *per_class.entry(r[64].to_string()).or_default() += 1;
    }
    let r = validate(&dir, ModeChoice::MultiClass).unwrap();
    assert!(r.valid, "{:?}", r.errors);
    assert_eq!(r.images_checked, 1797);
    assert_eq!(r.image_sizes["8x8"], 1797);
    assert_eq!(
        r.stats.classes,
        (0..10).map(|d| d.to_string()).collect::<Vec<_>>()
    );
    assert_eq!(r.stats.overall.class_counts, per_class);
    assert_eq!(r.stats.overall.images, 1797);

    // Labels and pixels of every image against its CSV row (row index in the name).
    let mut seen = BTreeSet::new();
    for split in ["train", "val", "test"] {
        for (img, labs) in read_list(&dir.join(format!("{split}.txt"))) {
            let row: usize = img
                .strip_prefix("digit_")
                .unwrap()
                .strip_suffix(".png")
                .unwrap()
                .parse()
                .unwrap();
            assert!(seen.insert(row));
            assert_eq!(labs, [rows[row][64].to_string()]);
            let want: Vec<u8> = rows[row][..64]
                .iter()
                .map(|&v| (v as f64 * 255.0 / 16.0).round() as u8)
                .collect();
            assert_eq!(
                gray(&dir.join("images").join(&img)).as_raw(),
                &want,
                "{img}"
            );
        }
    }
    assert_eq!(seen.len(), 1797);

    let limited = out.path().join("digits_small");
    assert_eq!(
        digits::import(&raw("digits"), &limited, Some(25), 11).unwrap(),
        [25, 25, 25]
    );
}

#[test]
fn mosaic_labels_are_the_garments_on_its_tiles() {
    let src = fmnist();
    // Every source image, keyed by its pixels, to identify tiles without trusting the importer.
    let mut by_pixels: HashMap<&[u8], (String, u8)> = HashMap::new();
    for (file, px, lab) in [
        ("train", &src.train_px, &src.train_lab),
        ("test", &src.test_px, &src.test_lab),
    ] {
        for (i, img) in px.chunks_exact(784).enumerate() {
            by_pixels.insert(img, (format!("{file}:{i}"), lab[i]));
        }
    }
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("mosaic");
    let opts = mosaic::Options {
        limit: Some(40),
        seed: 9,
        ..Default::default()
    };
    assert_eq!(
        mosaic::import(&raw("fashion-mnist"), &dir, &opts).unwrap(),
        [40, 40, 40]
    );

    let manifest: HashMap<String, Vec<String>> = std::fs::read_to_string(dir.join("sources.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let mut f = l.split(',').map(str::to_string);
            (f.next().unwrap(), f.collect())
        })
        .collect();
    let (mut used, mut blank, mut multi) = (BTreeSet::new(), 0, 0);
    let mut train_sources = BTreeSet::new();
    let mut val_sources = BTreeSet::new();
    for split in ["train", "val", "test"] {
        for (img, labs) in read_list(&dir.join(format!("{split}.txt"))) {
            let g = gray(&dir.join("images").join(&img));
            assert_eq!(g.dimensions(), (56, 56));
            let mut want = BTreeSet::new();
            for t in 0..4 {
                let (ty, tx) = (t / 2 * 28, t % 2 * 28);
                let tile: Vec<u8> = (0..28)
                    .flat_map(|y| (0..28).map(move |x| (x, y)))
                    .map(|(x, y)| g.get_pixel(tx + x, ty + y)[0])
                    .collect();
                match by_pixels.get(tile.as_slice()) {
                    Some((source, label)) => {
                        assert_eq!(&manifest[&img][t as usize], source, "{img} tile {t}");
                        assert!(used.insert(source.clone()), "{source} used twice");
                        assert_eq!(source.starts_with("test:"), split == "test");
                        match split {
                            "train" => train_sources.insert(source.clone()),
                            "val" => val_sources.insert(source.clone()),
                            _ => true,
                        };
                        want.insert(safe(FMNIST_NAMES[*label as usize]));
                    }
                    None => {
                        assert_eq!(manifest[&img][t as usize], "-", "{img} tile {t}");
                        assert!(
                            tile.iter().all(|&v| v <= 16),
                            "{img} tile {t} is neither a garment nor empty"
                        );
                    }
                }
            }
            let labs: BTreeSet<String> = labs.into_iter().collect();
            assert_eq!(labs, want, "{img}");
            blank += usize::from(want.is_empty());
            multi += usize::from(want.len() >= 2);
        }
    }
    assert!(blank > 0 && multi > 0, "blank {blank}, multi-label {multi}");
    // The val part of the carve is the same as the Fashion-MNIST importer's.
    let [_, val_idx, _] = fashion_mnist::split_indices(
        60000,
        10000,
        &fashion_mnist::Options {
            limit: None,
            seed: 9,
            val: 6000,
        },
    )
    .unwrap();
    let val_idx: BTreeSet<String> = val_idx.iter().map(|i| format!("train:{i}")).collect();
    assert!(val_sources.is_subset(&val_idx));
    assert!(train_sources.is_disjoint(&val_idx));

    let r = validate(&dir, ModeChoice::Auto).unwrap();
    assert!(r.valid, "{:?}", r.errors);
    assert_eq!(r.stats.mode, Mode::MultiLabel);
    assert_eq!(r.stats.overall.no_label, blank);
    assert_eq!(r.stats.overall.images, 120);
}
