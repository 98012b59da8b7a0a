//! Reading a Prometheus / OpenMetrics text exposition in tests: samples by name and labels.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Every sample of an exposition (comments skipped); `Err` names the first line it cannot read.
pub fn parse(text: &str) -> Result<Vec<Sample>, String> {
    text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).map(sample).collect()
}

fn sample(line: &str) -> Result<Sample, String> {
    let bad = || format!("cannot read sample line `{line}`");
    let name_end = line.find(['{', ' ']).ok_or_else(bad)?;
    let name = line[..name_end].to_string();
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(inner) = rest.strip_prefix('{') {
        rest = inner;
        loop {
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let eq = rest.find("=\"").ok_or_else(bad)?;
            let key = rest[..eq].trim_start_matches(',').to_string();
            rest = &rest[eq + 2..];
            let mut value = String::new();
            let mut chars = rest.char_indices();
            let end = loop {
                match chars.next().ok_or_else(bad)? {
                    (_, '\\') => match chars.next().ok_or_else(bad)?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    (i, '"') => break i,
                    (_, c) => value.push(c),
                }
            };
            rest = rest[end + 1..].trim_start_matches(',');
            labels.insert(key, value);
        }
    }
    let value = rest.split_whitespace().next().ok_or_else(bad)?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().map_err(|_| bad())?,
    };
    Ok(Sample { name, labels, value })
}

/// A scraped exposition.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    pub samples: Vec<Sample>,
}

impl Scrape {
    pub fn parse(text: &str) -> Result<Scrape, String> {
        Ok(Scrape { samples: parse(text)? })
    }

    /// The samples named `name` that carry every label of `labels`.
    pub fn matching<'a>(&'a self, name: &'a str, labels: &'a [(&'a str, &'a str)]) -> impl Iterator<Item = &'a Sample> {
        self.samples.iter().filter(move |s| {
            s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// The value of the one sample named `name` with `labels` (all of them, others allowed).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut found = self.matching(name, labels);
        let first = found.next()?;
        found.next().is_none().then_some(first.value)
    }

    /// The sum over every sample named `name` with `labels`; 0 when there is none.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|s| s.value).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_names_labels_and_values() {
        let text = "# HELP x y\n# TYPE a counter\na_total 3\nb{route=\"/v1/kv/{ns}\",q=\"a\\\"b\\\\c\"} 1.5\nc_bucket{le=\"+Inf\"} 2\n# EOF\n";
        let s = Scrape::parse(text).unwrap();
        assert_eq!(s.value("a_total", &[]), Some(3.0));
        assert_eq!(s.value("b", &[("route", "/v1/kv/{ns}")]), Some(1.5));
        assert_eq!(s.value("b", &[("q", "a\"b\\c")]), Some(1.5));
        assert_eq!(s.value("b", &[("route", "/x")]), None);
        assert_eq!(s.sum("c_bucket", &[]), 2.0);
        assert!(parse("a_total\n").is_err());
        assert!(parse("b{route=\"x} 1\n").is_err());
    }
}
