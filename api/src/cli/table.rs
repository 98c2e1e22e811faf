//! Aligned text tables: a header of upper-case column names, one row per
//! object, columns separated by two spaces, nothing trailing. Meant to
//! be read, and to survive `awk '{print $1}'` (no cell is empty: a
//! missing value is `-`).

pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table, each line ending in a newline.
    pub fn render(&self) -> String {
        let cols = self.header.len();
        let mut width = vec![0usize; cols];
        let cell = |c: &String| {
            if c.is_empty() {
                "-".to_string()
            } else {
                c.clone()
            }
        };
        let lines: Vec<Vec<String>> = std::iter::once(&self.header)
            .chain(&self.rows)
            .map(|r| {
                (0..cols)
                    .map(|i| r.get(i).map_or("-".into(), cell))
                    .collect()
            })
            .collect();
        for l in &lines {
            for (w, c) in width.iter_mut().zip(l) {
                *w = (*w).max(c.chars().count());
            }
        }
        let mut out = String::new();
        for l in &lines {
            let mut line = String::new();
            for (i, c) in l.iter().enumerate() {
                if i + 1 < cols {
                    line += &format!("{c:<w$}  ", w = width[i]);
                } else {
                    line += c;
                }
            }
            out += line.trim_end();
            out.push('\n');
        }
        out
    }
}

/// `-` for nothing, the value otherwise.
pub fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_and_empty_cells_are_dashes() {
        let mut t = Table::new(&["NAME", "VNI", "IPV4"]);
        t.row(vec!["vm1".into(), "7777".into(), "10.0.0.5".into()]);
        t.row(vec!["a-long-name".into(), "1".into(), String::new()]);
        assert_eq!(
            t.render(),
            "NAME         VNI   IPV4\n\
             vm1          7777  10.0.0.5\n\
             a-long-name  1     -\n"
        );
    }
}
