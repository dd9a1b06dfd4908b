//! Sections of BENCHMARKS.md that one kind of run owns (the data path, the
//! side-by-side comparison): marked with HTML comments, so that a run
//! replaces its own section and leaves the rest of the report alone.

/// A marked section: everything from `begin` to `end`.
#[derive(Clone, Copy, Debug)]
pub struct Section {
    pub begin: &'static str,
    pub end: &'static str,
}

impl Section {
    /// `doc` with this section replaced by `text` (or `text` inserted before
    /// "## What limits it", or appended, when the section is not there yet).
    pub fn splice(&self, doc: &str, text: &str) -> String {
        if let (Some(b), Some(e)) = (doc.find(self.begin), doc.find(self.end))
            && b < e
        {
            let end = e + self.end.len();
            let rest = doc[end..].strip_prefix('\n').unwrap_or(&doc[end..]);
            return format!("{}{text}{rest}", &doc[..b]);
        }
        if let Some(i) = doc.find("## What limits it") {
            return format!("{}{text}\n{}", &doc[..i], &doc[i..]);
        }
        format!("{doc}\n{text}")
    }

    /// This section of an existing document, if it has one.
    pub fn existing(&self, doc: &str) -> Option<String> {
        let b = doc.find(self.begin)?;
        let e = doc.find(self.end)?;
        (b < e).then(|| format!("{}\n", &doc[b..e + self.end.len()]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Section = Section {
        begin: "<!-- s:begin -->",
        end: "<!-- s:end -->",
    };

    #[test]
    fn a_section_is_inserted_once_then_replaced_in_place() {
        let section = format!("{}\nnew\n{}\n", S.begin, S.end);
        let doc = "# B\n\n## Results\nx\n\n## What limits it\ny\n";
        let once = S.splice(doc, &section);
        assert_eq!(
            once,
            format!("# B\n\n## Results\nx\n\n{section}\n## What limits it\ny\n")
        );
        let again = S.splice(&once, &format!("{}\nnewer\n{}\n", S.begin, S.end));
        assert!(again.contains("newer") && !again.contains("\nnew\n"));
        assert_eq!(again.matches(S.begin).count(), 1);
        assert_eq!(
            S.existing(&again),
            Some(format!("{}\nnewer\n{}\n", S.begin, S.end))
        );
        assert_eq!(S.splice("# B\n", &section), format!("# B\n\n{section}"));
    }

    #[test]
    fn another_section_is_left_alone() {
        let other = Section {
            begin: "<!-- o:begin -->",
            end: "<!-- o:end -->",
        };
        let doc = format!("# B\n{}\nkeep\n{}\n", other.begin, other.end);
        let out = S.splice(&doc, &format!("{}\nmine\n{}\n", S.begin, S.end));
        assert!(out.contains("keep") && out.contains("mine"));
        assert_eq!(other.existing(&out), other.existing(&doc));
    }
}
