//! `validate` on small hand-made data sets: real images that decode, and every kind of fault.

use std::path::{Path, PathBuf};

use kdtrainer::data::validate::validate;
use kdtrainer::data::{Mode, ModeChoice};

fn photos() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data/raw/photos")
}

/// A distinct 4x3 grey PNG per `seed`.
fn png(path: &Path, seed: u8) {
    let px: Vec<u8> = (0..12u8)
        .map(|i| i.wrapping_mul(17).wrapping_add(seed))
        .collect();
    image::GrayImage::from_raw(4, 3, px)
        .unwrap()
        .save(path)
        .unwrap();
}

fn lists(dir: &Path, train: &str, val: &str, test: &str) {
    std::fs::write(dir.join("train.txt"), train).unwrap();
    std::fs::write(dir.join("val.txt"), val).unwrap();
    std::fs::write(dir.join("test.txt"), test).unwrap();
}

/// The size of the BMP/PPM conversions written by [`dataset`].
fn coffee_size() -> String {
    let (w, h) = image::open(photos().join("coffee.png"))
        .unwrap()
        .thumbnail(40, 40)
        .to_rgb8()
        .dimensions();
    format!("{w}x{h}")
}

fn dataset() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let img = d.path().join("images");
    std::fs::create_dir_all(img.join("sub")).unwrap();
    for (i, n) in ["a.png", "b.png", "c.png", "sub/d.png"].iter().enumerate() {
        png(&img.join(n), i as u8);
    }
    // Real photos: a JPEG and an RGB PNG, plus BMP and PPM conversions of a PNG.
    std::fs::copy(photos().join("china.jpg"), img.join("china.jpg")).unwrap();
    std::fs::copy(photos().join("chelsea.png"), img.join("chelsea.png")).unwrap();
    let small = image::open(photos().join("coffee.png"))
        .unwrap()
        .thumbnail(40, 40)
        .to_rgb8();
    small.save(img.join("coffee.bmp")).unwrap();
    small.save(img.join("coffee.ppm")).unwrap();
    d
}

#[test]
fn a_good_data_set_is_valid_and_all_formats_decode() {
    let d = dataset();
    lists(
        d.path(),
        "a.png,cat\r\nb.png,dog|cat\r\nchina.jpg,\r\n\r\ncoffee.bmp,dog\r\n",
        "c.png,cat\nsub/d.png\n",
        "chelsea.png,cat\ncoffee.ppm,bird\n",
    );
    let r = validate(d.path(), ModeChoice::Auto).unwrap();
    assert!(r.valid, "{:?}", r.errors);
    assert_eq!(r.images_checked, 8);
    assert_eq!(r.image_sizes["4x3"], 4);
    assert_eq!(r.image_sizes["640x427"], 1); // china.jpg
    assert_eq!(r.image_sizes["451x300"], 1); // chelsea.png
    assert_eq!(r.image_sizes[&coffee_size()], 2); // BMP and PPM
    assert_eq!(r.image_sizes.values().sum::<usize>(), 8);
    // "bird" only appears in test: a warning, not an error.
    assert_eq!(r.warnings, ["class \"bird\" has no training image"]);
    assert_eq!(r.stats.mode, Mode::MultiLabel);
    assert_eq!(r.stats.classes, ["bird", "cat", "dog"]);
    let train = &r.stats.splits["train"];
    assert_eq!(
        (train.images, train.no_label, train.labels_per_image.clone()),
        (4, 1, vec![1, 2, 1])
    );
    assert_eq!(train.label_cardinality, 4.0 / 4.0);
    assert_eq!(r.stats.overall.class_counts["cat"], 4);
    assert_eq!(r.stats.overall.class_counts["dog"], 2);
    assert_eq!(r.stats.overall.no_label, 2);
    let json: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
    assert_eq!(json["schema"], "kdedge.data.validate/1");
    assert_eq!(json["valid"], true);
    assert_eq!(json["stats"]["splits"]["val"]["no_label_rate"], 0.5);
    assert_eq!(json["stats"]["overall"]["class_counts"]["bird"], 1);
    assert!(r.to_text().starts_with("warning: class \"bird\""));
}

#[test]
fn missing_undecodable_and_leaked_images_are_errors_naming_file_and_line() {
    let d = dataset();
    let img = d.path().join("images");
    std::fs::write(img.join("text.png"), b"this is not a PNG").unwrap();
    std::fs::write(
        img.join("trunc.jpg"),
        &std::fs::read(photos().join("china.jpg")).unwrap()[..2000],
    )
    .unwrap();
    std::fs::copy(img.join("a.png"), img.join("a_copy.png")).unwrap();
    std::fs::copy(img.join("b.png"), img.join("b_copy.png")).unwrap();
    lists(
        d.path(),
        "a.png,cat\nb.png,dog\nb_copy.png,dog\nmissing.png,cat\n",
        "text.png,cat\nc.png,cat\n",
        "trunc.jpg,dog\n\nc.png,cat\na_copy.png,cat\n",
    );
    let r = validate(d.path(), ModeChoice::Auto).unwrap();
    assert!(!r.valid);
    assert_eq!(r.images_checked, 6, "{:?}", r.errors);
    let e = &r.errors;
    assert_eq!(e.len(), 5, "{e:#?}");
    assert!(
        e[0].starts_with("train.txt:4: image \"missing.png\" cannot read:"),
        "{}",
        e[0]
    );
    assert!(
        e[1].starts_with("val.txt:1: image \"text.png\" does not decode:"),
        "{}",
        e[1]
    );
    assert!(
        e[2].starts_with("test.txt:1: image \"trunc.jpg\" does not decode:"),
        "{}",
        e[2]
    );
    assert!(
        e.iter().all(|m| !m.contains('\n')),
        "one line per error: {e:?}"
    );
    assert_eq!(
        e[3],
        "test.txt:3: image \"c.png\" is also listed in val.txt:2"
    );
    assert!(
        e[4].starts_with("test.txt:4: image \"a_copy.png\" has the same content (sha256 ")
            && e[4].ends_with(") as \"a.png\" at train.txt:1"),
        "{}",
        e[4]
    );
    // A copy within one split is only a warning.
    assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
    assert!(r.warnings[0].starts_with("train.txt:3: image \"b_copy.png\" has the same content"));
    assert!(r.warnings[0].ends_with("as \"b.png\" at train.txt:2"));
}

#[test]
fn list_errors_stop_validation_and_name_file_and_line() {
    let d = dataset();
    lists(
        d.path(),
        "a.png,cat|\n",
        "b.png,cat|cat\n",
        "c.png\nc.png\n",
    );
    let e = format!("{:#}", validate(d.path(), ModeChoice::Auto).unwrap_err());
    assert!(
        e.contains("train.txt:1: empty class name in \"a.png,cat|\""),
        "{e}"
    );
    assert!(
        e.contains("val.txt:1: class \"cat\" repeated in \"b.png,cat|cat\""),
        "{e}"
    );
    assert!(
        e.contains("test.txt:2: image \"c.png\" already listed on line 1"),
        "{e}"
    );
}

#[test]
fn forced_multi_class_rejects_unlabelled_images() {
    let d = dataset();
    lists(
        d.path(),
        "a.png,cat\nb.png,dog\n",
        "c.png\n",
        "sub/d.png,cat\n",
    );
    assert_eq!(
        validate(d.path(), ModeChoice::Auto).unwrap().stats.mode,
        Mode::MultiLabel
    );
    let e = validate(d.path(), ModeChoice::MultiClass)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "val.txt:1: multi-class mode needs exactly one class per image, \"c.png\" has 0"
    );
}

#[test]
fn the_cli_exits_non_zero_on_an_invalid_data_set() {
    let d = dataset();
    lists(d.path(), "a.png,cat\n", "nope.png,cat\n", "c.png,cat\n");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kdtrain"))
        .args(["data", "validate", "--json"])
        .arg(d.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["valid"], false);
    assert!(json["errors"][0]
        .as_str()
        .unwrap()
        .starts_with("val.txt:1: image \"nope.png\" cannot read"));
    lists(d.path(), "a.png,cat\n", "b.png,dog\n", "c.png,cat\n");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kdtrain"))
        .args(["data", "stats"])
        .arg(d.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("mode: multi-class   classes: 2"), "{text}");
}
