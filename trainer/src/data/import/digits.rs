//! scikit-learn's digits (a copy of the UCI "Optical Recognition of Handwritten Digits" test
//! set): `digits.csv.gz`, 1,797 rows of 64 pixel values `0..=16` (8x8, row-major) then the digit.
//!
//! Pixels are scaled to `0..=255` as `round(v * 255 / 16)`. Classes are named `0` to `9`, so the
//! sorted vocabulary puts digit `d` at output `d`. Splits: a seeded shuffle of the rows, the
//! first 15% (rounded down) are val, the next 15% test, the rest train. Images are named
//! `digit_NNNN.png`, `NNNN` being the 0-based row; lists are sorted by row.

use std::path::Path;

use anyhow::{bail, Result};

use super::{read_gz, DatasetWriter, SplitMix64};
use crate::data::Split;

/// Class names by digit.
pub const CLASSES: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

/// One parsed row: 64 pixels (`0..=16`) and the digit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// 8x8 pixels, row-major, `0..=16`.
    pub pixels: [u8; 64],
    /// The digit, `0..=9`.
    pub digit: u8,
}

/// Parses one integral value in `0..=max` (written as `5` or `5.0`).
fn value(field: &str, max: u8) -> Option<u8> {
    let v: f64 = field.trim().parse().ok()?;
    (v.fract() == 0.0 && (0.0..=f64::from(max)).contains(&v)).then_some(v as u8)
}

/// Parses the CSV text; errors name `file` and the 1-based line.
pub fn parse(file: &str, text: &str) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() != 65 {
            bail!("{file}:{}: expected 65 values, got {}", i + 1, fields.len());
        }
        let mut pixels = [0u8; 64];
        for (k, (p, f)) in pixels.iter_mut().zip(&fields).enumerate() {
            *p = value(f, 16).ok_or_else(|| {
                anyhow::anyhow!(
                    "{file}:{}: pixel {k} {f:?} is not an integer in 0..=16",
                    i + 1
                )
            })?;
        }
        let last = fields.last().copied().unwrap_or_default();
        let digit = value(last, 9).ok_or_else(|| {
            anyhow::anyhow!("{file}:{}: label {last:?} is not a digit 0..=9", i + 1)
        })?;
        rows.push(Row { pixels, digit });
    }
    Ok(rows)
}

/// Reads and parses `raw/digits.csv.gz`.
pub fn load(raw: &Path) -> Result<Vec<Row>> {
    let path = raw.join("digits.csv.gz");
    let bytes = read_gz(&path)?;
    let Ok(text) = String::from_utf8(bytes) else {
        bail!("{}: not UTF-8 text", path.display());
    };
    parse(&path.display().to_string(), &text)
}

/// `round(v * 255 / 16)` for `v` in `0..=16`.
pub fn scale(v: u8) -> u8 {
    ((u32::from(v) * 255 + 8) / 16).min(255) as u8
}

/// Row indices of each split `(train, val, test)`, each sorted, each truncated to `limit`.
pub fn split_indices(n: usize, seed: u64, limit: Option<usize>) -> [Vec<usize>; 3] {
    let mut idx: Vec<usize> = (0..n).collect();
    SplitMix64::new(seed).shuffle(&mut idx);
    let k = n * 15 / 100;
    let mut out = [
        idx.get(2 * k..).unwrap_or_default().to_vec(),
        idx.get(..k).unwrap_or_default().to_vec(),
        idx.get(k..2 * k).unwrap_or_default().to_vec(),
    ];
    for v in &mut out {
        if let Some(l) = limit {
            v.truncate(l);
        }
        v.sort_unstable();
    }
    out
}

/// Writes the data set to `out`; returns images per split (train, val, test).
pub fn import(raw: &Path, out: &Path, limit: Option<usize>, seed: u64) -> Result<[usize; 3]> {
    let rows = load(raw)?;
    let splits = split_indices(rows.len(), seed, limit);
    let mut w = DatasetWriter::create(out)?;
    for (split, idx) in Split::ALL.iter().zip(&splits) {
        for &i in idx {
            let Some(row) = rows.get(i) else {
                bail!("row {i} out of range");
            };
            let class = CLASSES.get(usize::from(row.digit)).copied().unwrap_or("?");
            let pixels = row.pixels.iter().map(|&v| scale(v)).collect();
            w.add_gray(*split, &format!("digit_{i:04}.png"), 8, 8, pixels, &[class])?;
        }
    }
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaling_by_hand() {
        assert_eq!(scale(0), 0);
        assert_eq!(scale(16), 255);
        assert_eq!(scale(8), 128); // 127.5 rounds up
        assert_eq!(scale(1), 16); // 15.94
        assert_eq!(scale(5), 80); // 79.69
    }

    #[test]
    fn parse_errors_name_line() {
        let good = format!("{}7\n", "0,".repeat(64));
        let rows = parse(
            "d.csv",
            &format!("{good}\n{}", good.replace("0,7", "0,3.0")),
        )
        .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].digit, rows[1].digit), (7, 3));
        let e = parse("d.csv", &format!("{good}1,2\n"))
            .unwrap_err()
            .to_string();
        assert_eq!(e, "d.csv:2: expected 65 values, got 2");
        let e = parse("d.csv", &good.replacen('0', "17", 1))
            .unwrap_err()
            .to_string();
        assert_eq!(e, "d.csv:1: pixel 0 \"17\" is not an integer in 0..=16");
        let e = parse("d.csv", &good.replace(",7", ",x"))
            .unwrap_err()
            .to_string();
        assert_eq!(e, "d.csv:1: label \"x\" is not a digit 0..=9");
    }
}
