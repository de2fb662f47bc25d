//! Per-image attributes: the `domain` and the `region` of a sample.
//!
//! Distillation reads them: KD applies only to the samples of the selected domains
//! (`distillation.domains`), and a teacher of an ensemble may contribute only where the sample's
//! region matches. An image gets its attributes from either of two places:
//!
//! 1. an optional third column of its split list, `key=value` pairs separated by `;`:
//!
//!    ```text
//!    street_1.jpg,car|person,domain=outdoor;region=eu
//!    kitchen_9.jpg,,domain=indoor
//!    ```
//!
//!    The third column is recognised only when the text after the second `,` contains `=`; any
//!    other second `,` stays the list's "class name contains ','" error.
//!
//! 2. a side file next to the list, `<split>.meta.csv` (`train.meta.csv`, ...): a header line
//!    `image` followed by any of `domain`, `region` (each at most once, any order), then one row per
//!    image with an empty cell meaning "not given":
//!
//!    ```text
//!    image,domain,region
//!    street_1.jpg,outdoor,eu
//!    kitchen_9.jpg,indoor,
//!    ```
//!
//! Rules (each violation an error naming file and 1-based line): keys are `domain` and `region`
//! only, each at most once per image; a value is non-empty after trimming and contains none of
//! `,` `;` `=` `|` or control characters; a side-file row names an image of the split's list, at
//! most once; a key given for one image in both places is an error naming both. Images without a
//! value simply have none (they are outside every selected domain). Blank lines, `\r\n` endings and a
//! leading byte-order mark are handled as in the lists.

use std::collections::HashMap;

use super::list::{Entry, LineError};

/// The attribute keys an image may carry.
pub const KEYS: [&str; 2] = ["domain", "region"];

/// The attributes of one image (each absent unless given).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attributes {
    /// The image's domain (e.g. `indoor`), matched against `distillation.domains`.
    pub domain: Option<String>,
    /// The image's region (e.g. `eu`), matched against per-teacher region filters.
    pub region: Option<String>,
}

impl Attributes {
    /// The value of `key` (`domain` or `region`).
    pub fn get(&self, key: &str) -> Option<&str> {
        match key {
            "domain" => self.domain.as_deref(),
            "region" => self.region.as_deref(),
            _ => None,
        }
    }

    /// The slot of `key`, or an error naming the known keys.
    fn slot(&mut self, key: &str) -> Result<&mut Option<String>, String> {
        match key {
            "domain" => Ok(&mut self.domain),
            "region" => Ok(&mut self.region),
            _ => Err(format!(
                "unknown attribute {key:?} (known: {})",
                KEYS.join(", ")
            )),
        }
    }

    /// True when no attribute is set.
    pub fn is_empty(&self) -> bool {
        self.domain.is_none() && self.region.is_none()
    }
}

/// Checks one attribute value (already trimmed); `Err` says what is wrong.
pub fn check_value(key: &str, value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("empty value of attribute {key:?}"));
    }
    if let Some(c) = value
        .chars()
        .find(|c| matches!(c, ',' | ';' | '=' | '|') || c.is_control())
    {
        let hint = if c == ',' {
            " (attributes are separated by ';')"
        } else {
            ""
        };
        return Err(format!(
            "value {value:?} of attribute {key:?} contains {c:?}{hint}"
        ));
    }
    Ok(())
}

/// Parses a list's third column, `key=value(;key=value)*`.
pub fn parse_attributes(text: &str) -> Result<Attributes, String> {
    let mut attrs = Attributes::default();
    for pair in text.split(';') {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(format!("attribute {:?} is not key=value", pair.trim()));
        };
        let (key, value) = (key.trim(), value.trim());
        let slot = attrs.slot(key)?;
        if slot.is_some() {
            return Err(format!("attribute {key:?} repeated"));
        }
        check_value(key, value)?;
        *slot = Some(value.to_string());
    }
    Ok(attrs)
}

/// One data row of a side file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetaRow {
    /// The image, as named in the split list.
    pub image: String,
    /// Its attributes from this row.
    pub attrs: Attributes,
    /// 1-based line in the side file.
    pub line: usize,
}

/// Parses a `<split>.meta.csv` side file (see the module docs); `file` names it in errors.
/// Reports every error found.
pub fn parse_side_file(file: &str, text: &str) -> Result<Vec<MetaRow>, Vec<LineError>> {
    let err = |line: usize, message: String| LineError {
        file: file.to_string(),
        line,
        message,
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((header_line, header)) = lines.next() else {
        return Err(vec![err(
            0,
            "empty file (needs a header `image,domain,region`)".into(),
        )]);
    };
    let columns: Vec<&str> = header.split(',').map(str::trim).collect();
    let mut header_errors = Vec::new();
    if columns[0] != "image" {
        header_errors.push(format!(
            "header must start with `image`, got {:?}",
            columns[0]
        ));
    }
    for (i, c) in columns.iter().enumerate().skip(1) {
        if !KEYS.contains(c) {
            header_errors.push(format!("unknown column {c:?} (known: {})", KEYS.join(", ")));
        } else if columns[1..i].contains(c) {
            header_errors.push(format!("column {c:?} repeated"));
        }
    }
    if !header_errors.is_empty() {
        return Err(header_errors
            .into_iter()
            .map(|m| err(header_line, m))
            .collect());
    }
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (line, raw) in lines {
        match parse_row(raw, &columns) {
            Ok(row) => {
                if let Some(first) = seen.get(&row.0) {
                    errors.push(err(
                        line,
                        format!("image {:?} already listed on line {first}", row.0),
                    ));
                    continue;
                }
                seen.insert(row.0.clone(), line);
                rows.push(MetaRow {
                    image: row.0,
                    attrs: row.1,
                    line,
                });
            }
            Err(m) => errors.push(err(line, format!("{m} in {raw:?}"))),
        }
    }
    if errors.is_empty() {
        Ok(rows)
    } else {
        Err(errors)
    }
}

/// One side-file row under the header `columns`.
fn parse_row(raw: &str, columns: &[&str]) -> Result<(String, Attributes), String> {
    let cells: Vec<&str> = raw.split(',').map(str::trim).collect();
    if cells.len() != columns.len() {
        return Err(format!(
            "{} field(s), the header has {}",
            cells.len(),
            columns.len()
        ));
    }
    if cells[0].is_empty() {
        return Err("empty image name".into());
    }
    let mut attrs = Attributes::default();
    for (key, value) in columns.iter().zip(&cells).skip(1) {
        if value.is_empty() {
            continue;
        }
        check_value(key, value)?;
        *attrs.slot(key)? = Some(value.to_string());
    }
    Ok((cells[0].to_string(), attrs))
}

/// Adds the side file's rows to the list's entries. `list_file` and `side_file` name the two files
/// in errors; every problem found is returned.
pub fn merge_side_file(
    list_file: &str,
    entries: &mut [Entry],
    side_file: &str,
    rows: Vec<MetaRow>,
) -> Vec<LineError> {
    let by_image: HashMap<&str, usize> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| (e.image.as_str(), i))
        .collect();
    let mut errors = Vec::new();
    let mut updates = Vec::new();
    for row in rows {
        let Some(&i) = by_image.get(row.image.as_str()) else {
            errors.push(LineError {
                file: side_file.to_string(),
                line: row.line,
                message: format!("image {:?} is not in {list_file}", row.image),
            });
            continue;
        };
        updates.push((i, row));
    }
    for (i, row) in updates {
        let entry = &mut entries[i];
        for key in KEYS {
            let Some(value) = row.attrs.get(key) else {
                continue;
            };
            let slot = entry
                .attrs
                .slot(key)
                .expect("KEYS are the known attribute keys");
            if slot.is_some() {
                errors.push(LineError {
                    file: side_file.to_string(),
                    line: row.line,
                    message: format!(
                        "attribute {key:?} of image {:?} is also given in {list_file}:{}",
                        row.image, entry.line
                    ),
                });
            } else {
                *slot = Some(value.to_string());
            }
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::list::parse_list;

    #[test]
    fn third_column_attributes() {
        let a = parse_attributes(" domain = indoor ; region=eu").unwrap();
        assert_eq!(a.domain.as_deref(), Some("indoor"));
        assert_eq!(a.region.as_deref(), Some("eu"));
        assert_eq!(
            parse_attributes("domain=a;domain=b").unwrap_err(),
            "attribute \"domain\" repeated"
        );
        assert_eq!(
            parse_attributes("colour=red").unwrap_err(),
            "unknown attribute \"colour\" (known: domain, region)"
        );
        assert_eq!(
            parse_attributes("domain=").unwrap_err(),
            "empty value of attribute \"domain\""
        );
        assert_eq!(
            parse_attributes("domain=a;").unwrap_err(),
            "attribute \"\" is not key=value"
        );
        assert_eq!(
            parse_attributes("domain=a,region=b").unwrap_err(),
            "value \"a,region=b\" of attribute \"domain\" contains ',' \
             (attributes are separated by ';')"
        );
    }

    #[test]
    fn side_file_rows_header_and_errors() {
        let rows = parse_side_file(
            "train.meta.csv",
            "\u{feff}image, region ,domain\r\na.png,eu,indoor\r\n\r\nb.png,,outdoor\n",
        )
        .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].attrs.region.as_deref(), Some("eu"));
        assert_eq!(rows[0].attrs.domain.as_deref(), Some("indoor"));
        assert_eq!((rows[1].image.as_str(), rows[1].line), ("b.png", 4));
        assert_eq!(rows[1].attrs.region, None);

        let e: Vec<String> = parse_side_file("t.meta.csv", "img,domain,colour\n")
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            e,
            [
                "t.meta.csv:1: header must start with `image`, got \"img\"",
                "t.meta.csv:1: unknown column \"colour\" (known: domain, region)"
            ]
        );
        let e: Vec<String> = parse_side_file(
            "t.meta.csv",
            "image,domain\na.png,x\na.png,y\nb.png\n,z\nc.png,p|q\n",
        )
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect();
        assert_eq!(
            e,
            [
                "t.meta.csv:3: image \"a.png\" already listed on line 2",
                "t.meta.csv:4: 1 field(s), the header has 2 in \"b.png\"",
                "t.meta.csv:5: empty image name in \",z\"",
                "t.meta.csv:6: value \"p|q\" of attribute \"domain\" contains '|' in \"c.png,p|q\"",
            ]
        );
        assert_eq!(
            parse_side_file("t.meta.csv", "\n \n").unwrap_err()[0].to_string(),
            "t.meta.csv: empty file (needs a header `image,domain,region`)"
        );
    }

    #[test]
    fn merge_names_unknown_images_and_conflicts() {
        let mut entries =
            parse_list("train.txt", "a.png,x,domain=indoor\nb.png,y\nc.png,x\n").unwrap();
        let rows = parse_side_file(
            "train.meta.csv",
            "image,domain,region\na.png,outdoor,eu\nb.png,indoor,\nzz.png,indoor,\n",
        )
        .unwrap();
        let e: Vec<String> = merge_side_file("train.txt", &mut entries, "train.meta.csv", rows)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            e,
            [
                "train.meta.csv:4: image \"zz.png\" is not in train.txt",
                "train.meta.csv:2: attribute \"domain\" of image \"a.png\" is also given in \
                 train.txt:1",
            ]
        );
        // What did not conflict was merged.
        assert_eq!(entries[0].attrs.region.as_deref(), Some("eu"));
        assert_eq!(entries[0].attrs.domain.as_deref(), Some("indoor"));
        assert_eq!(entries[1].attrs.domain.as_deref(), Some("indoor"));
        assert!(entries[2].attrs.is_empty());
    }
}
