//! Parsing of one split list (`train.txt`, `val.txt`, `test.txt`).
//!
//! One image per line, in one of three forms:
//!
//! ```text
//! image.jpg,cls1|cls2|cls3     labelled (one or more classes)
//! image.jpg,                   explicitly no label
//! image.jpg                    no label
//! ```
//!
//! A labelled or explicitly unlabelled line may carry a third column of per-image attributes,
//! `image.jpg,cls1|cls2,domain=indoor;region=eu` (grammar and rules in [`super::meta`]). It is
//! recognised only when the text after the second `,` contains `=`; otherwise a second `,` is
//! the class-name error below, as it always was.
//!
//! Rules (each violation is an error naming the file and the 1-based line):
//! - `\n` and `\r\n` line endings are both accepted; a leading UTF-8 byte-order mark is ignored.
//! - Blank (empty or whitespace-only) lines are skipped.
//! - Whitespace around the image name and around each class name is trimmed.
//! - The image name is everything before the first `,`; it must be a relative path below `images/`
//!   using `/` separators, with no empty, `.` or `..` components and no backslashes.
//! - Class names are separated by `|`; none may be empty, contain `,` or control characters, or
//!   repeat within one line.
//! - An image may appear only once per list.

use std::collections::HashMap;
use std::fmt;

use super::meta::{self, Attributes};

/// One parsed line: an image and the classes it carries (possibly none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Path of the image relative to the data set's `images/` folder.
    pub image: String,
    /// Class names in the order written; no duplicates.
    pub labels: Vec<String>,
    /// 1-based line number in the list file, for error messages.
    pub line: usize,
    /// Per-image attributes from the third column or the split's side file (see [`super::meta`]).
    pub attrs: Attributes,
}

/// A problem in a list file, located by file name and 1-based line (0 when it concerns the file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineError {
    /// The list file's name as given to the parser (e.g. `train.txt`).
    pub file: String,
    /// 1-based line number; 0 when the problem is about the whole file.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
        }
    }
}

impl std::error::Error for LineError {}

/// Parses the text of a list file. `file` is only used in error messages.
///
/// Returns every valid entry, or every error found (not just the first), so a user can fix a file
/// in one pass.
pub fn parse_list(file: &str, text: &str) -> Result<Vec<Entry>, Vec<LineError>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut entries = Vec::new();
    let mut errors = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, raw) in text.split('\n').enumerate() {
        let line_no = i + 1;
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if raw.trim().is_empty() {
            continue;
        }
        match parse_line(raw) {
            Ok((image, labels, attrs)) => {
                if let Some(first) = seen.get(&image) {
                    errors.push(LineError {
                        file: file.to_string(),
                        line: line_no,
                        message: format!("image {image:?} already listed on line {first}"),
                    });
                    continue;
                }
                seen.insert(image.clone(), line_no);
                entries.push(Entry {
                    image,
                    labels,
                    line: line_no,
                    attrs,
                });
            }
            Err(message) => errors.push(LineError {
                file: file.to_string(),
                line: line_no,
                message: format!("{message} in {raw:?}"),
            }),
        }
    }
    if errors.is_empty() {
        Ok(entries)
    } else {
        Err(errors)
    }
}

/// Parses one non-blank line into (image, labels, attributes), or says what is wrong with it.
fn parse_line(raw: &str) -> Result<(String, Vec<String>, Attributes), String> {
    let (image, rest) = match raw.split_once(',') {
        Some((image, rest)) => (image.trim(), Some(rest)),
        None => (raw.trim(), None),
    };
    check_image_name(image)?;
    // A third column only when it reads as attributes; any other second ',' keeps its old error.
    let (rest, attrs) = match rest.and_then(|r| r.split_once(',')) {
        Some((labels, third)) if third.contains('=') => {
            (Some(labels), meta::parse_attributes(third)?)
        }
        _ => (rest, Attributes::default()),
    };
    let mut labels: Vec<String> = Vec::new();
    if let Some(rest) = rest {
        if !rest.trim().is_empty() {
            for name in rest.split('|') {
                let name = name.trim();
                if name.is_empty() {
                    return Err("empty class name".into());
                }
                if name.contains(',') {
                    return Err(format!("class name {name:?} contains ','"));
                }
                if name.chars().any(char::is_control) {
                    return Err(format!("class name {name:?} contains a control character"));
                }
                if labels.iter().any(|l| l == name) {
                    return Err(format!("class {name:?} repeated"));
                }
                labels.push(name.to_string());
            }
        }
    }
    Ok((image.to_string(), labels, attrs))
}

/// Image names must stay inside `images/`: relative, `/`-separated, no `.`/`..`/empty components.
fn check_image_name(image: &str) -> Result<(), String> {
    if image.is_empty() {
        return Err("empty image name".into());
    }
    if image.chars().any(char::is_control) {
        return Err("image name contains a control character".into());
    }
    if image.contains('\\') {
        return Err(format!("image name {image:?} contains '\\' (use '/')"));
    }
    if image.starts_with('/') {
        return Err(format!(
            "image name {image:?} is absolute (must be relative to images/)"
        ));
    }
    if image
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(format!(
            "image name {image:?} has an empty, '.' or '..' component"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Vec<Entry> {
        parse_list("train.txt", text).expect("should parse")
    }

    fn errs(text: &str) -> Vec<String> {
        parse_list("train.txt", text)
            .expect_err("should fail")
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn all_three_line_forms() {
        let e = ok("a.png,cat|dog|bird\nb.png,\nc.png\n");
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].image, "a.png");
        assert_eq!(e[0].labels, ["cat", "dog", "bird"]);
        assert_eq!(e[0].line, 1);
        assert_eq!(
            (e[1].image.as_str(), e[1].labels.len(), e[1].line),
            ("b.png", 0, 2)
        );
        assert_eq!(
            (e[2].image.as_str(), e[2].labels.len(), e[2].line),
            ("c.png", 0, 3)
        );
    }

    #[test]
    fn crlf_blank_lines_whitespace_and_bom() {
        let e = ok("\u{feff}  a.png , cat | dog \r\n\r\n   \r\n\tb.png\t\r\nsub/c.png,  \r\n");
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].labels, ["cat", "dog"]);
        assert_eq!(e[0].image, "a.png");
        assert_eq!((e[1].image.as_str(), e[1].line), ("b.png", 4));
        assert_eq!(
            (e[2].image.as_str(), e[2].line, e[2].labels.len()),
            ("sub/c.png", 5, 0)
        );
        // No trailing newline is fine too.
        assert_eq!(ok("x.png,a").len(), 1);
        assert!(ok("").is_empty());
    }

    #[test]
    fn empty_class_names_name_file_and_line() {
        assert_eq!(
            errs("ok.png,cat\na.png,cat|"),
            [r#"train.txt:2: empty class name in "a.png,cat|""#]
        );
        assert_eq!(
            errs("a.png,|cat")[0],
            r#"train.txt:1: empty class name in "a.png,|cat""#
        );
        assert_eq!(
            errs("a.png,cat| |dog")[0],
            r#"train.txt:1: empty class name in "a.png,cat| |dog""#
        );
    }

    #[test]
    fn duplicate_class_in_one_line_is_an_error() {
        assert_eq!(
            errs("a.png,cat|dog|cat"),
            [r#"train.txt:1: class "cat" repeated in "a.png,cat|dog|cat""#]
        );
    }

    #[test]
    fn bad_lines() {
        let e = errs(",cat\na.png,cat,dog\n/etc/passwd\n../x.png\na//b.png\nc:\\x.png\n");
        assert_eq!(e.len(), 6, "{e:?}");
        assert!(e[0].starts_with("train.txt:1: empty image name"));
        assert!(e[1].starts_with("train.txt:2: class name \"cat,dog\" contains ','"));
        assert!(e[2].starts_with("train.txt:3: image name \"/etc/passwd\" is absolute"));
        assert!(e[3].starts_with("train.txt:4: image name \"../x.png\" has an empty"));
        assert!(e[4].starts_with("train.txt:5: image name \"a//b.png\" has an empty"));
        assert!(e[5].starts_with("train.txt:6: image name \"c:\\\\x.png\" contains '\\'"));
    }

    #[test]
    fn same_image_twice_in_one_list() {
        assert_eq!(
            errs("a.png,cat\nb.png\n a.png ,dog\n"),
            [r#"train.txt:3: image "a.png" already listed on line 1"#]
        );
    }

    #[test]
    fn third_column_attributes() {
        let e = ok("a.png,cat|dog,domain=indoor;region=eu\nb.png, , region = us \nc.png,x\n");
        assert_eq!(e[0].labels, ["cat", "dog"]);
        assert_eq!(e[0].attrs.domain.as_deref(), Some("indoor"));
        assert_eq!(e[0].attrs.region.as_deref(), Some("eu"));
        assert!(e[1].labels.is_empty());
        assert_eq!(
            (e[1].attrs.domain.as_deref(), e[1].attrs.region.as_deref()),
            (None, Some("us"))
        );
        assert!(e[2].attrs.is_empty());
        // Without '=' the old class-name rule still applies, message unchanged.
        assert_eq!(
            errs("a.png,cat,"),
            [r#"train.txt:1: class name "cat," contains ',' in "a.png,cat,""#]
        );
        assert_eq!(
            errs("a.png,cat,domain=x;shape=round\nb.png,cat,domain=x,region=y\n"),
            [
                r#"train.txt:1: unknown attribute "shape" (known: domain, region) in "a.png,cat,domain=x;shape=round""#,
                r#"train.txt:2: value "x,region=y" of attribute "domain" contains ',' (attributes are separated by ';') in "b.png,cat,domain=x,region=y""#,
            ]
        );
        // The labels column keeps its rules when attributes follow.
        assert!(errs("a.png,cat|,domain=x")[0].starts_with("train.txt:1: empty class name"));
    }

    #[test]
    fn all_errors_are_reported_not_just_the_first() {
        let e = errs("a.png,|\nb.png\nc.png,x||y\n");
        assert_eq!(e.len(), 2);
        assert!(e[0].starts_with("train.txt:1:"));
        assert!(e[1].starts_with("train.txt:3:"));
    }
}
