//! Title, description and keywords from an SVG's RDF metadata (Dublin Core inside
//! `<metadata><rdf:RDF><cc:Work>`, as Inkscape and openclipart write it), found with a light
//! text scan rather than an XML parser: the elements are flat and few.

/// What an SVG says about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SvgMetadata {
    /// `dc:title` of the work (not of its creator or publisher).
    pub title: Option<String>,
    /// `dc:description`.
    pub description: Option<String>,
    /// The `rdf:li` items of `dc:subject`.
    pub keywords: Vec<String>,
}

impl SvgMetadata {
    /// Reads the metadata of an SVG document; missing parts are `None` or empty.
    pub fn parse(svg: &str) -> SvgMetadata {
        let work = section(svg, "cc:Work")
            .or_else(|| section(svg, "metadata"))
            .unwrap_or_default();
        // Agents (creator, publisher, rights holder) have titles of their own.
        let mut work = work.to_string();
        while let Some(agent) = section_span(&work, "cc:Agent") {
            work.replace_range(agent, "");
        }
        let title = element_text(&work, "dc:title");
        let description = element_text(&work, "dc:description");
        let mut keywords: Vec<String> = Vec::new();
        if let Some(subject) = section(&work, "dc:subject") {
            let mut rest = subject;
            let mut items = Vec::new();
            while let Some(span) = section_span(rest, "rdf:li") {
                items.push(text(inner(&rest[span.clone()], "rdf:li")));
                rest = &rest[span.end..];
            }
            if items.is_empty() {
                // A plain-text subject: "a, b, c".
                items = text(inner(subject, "dc:subject"))
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .collect();
            }
            for item in items {
                if !item.is_empty() && !keywords.contains(&item) {
                    keywords.push(item);
                }
            }
        }
        SvgMetadata {
            title,
            description,
            keywords,
        }
    }

    /// An alt-text: "title. description. keyword, keyword" (parts that are missing or repeat
    /// the title left out); `None` when there is nothing.
    pub fn caption(&self) -> Option<String> {
        let mut parts: Vec<String> = Vec::new();
        parts.extend(self.title.clone());
        if let Some(d) = &self.description
            && Some(d) != self.title.as_ref()
        {
            parts.push(d.clone());
        }
        if !self.keywords.is_empty() {
            parts.push(self.keywords.join(", "));
        }
        (!parts.is_empty()).then(|| parts.join(". "))
    }
}

/// The byte range of the first `<tag …>…</tag>` (or `<tag …/>`) in `s`.
fn section_span(s: &str, tag: &str) -> Option<std::ops::Range<usize>> {
    let open = format!("<{tag}");
    let mut from = 0;
    loop {
        let start = from + s[from..].find(&open)?;
        let after = start + open.len();
        // `<dc:title>` or `<dc:title attr…>`, not `<dc:titles>`.
        match s[after..].chars().next() {
            Some('>' | '/' | ' ' | '\t' | '\n' | '\r') => {}
            _ => {
                from = after;
                continue;
            }
        }
        let tag_end = after + s[after..].find('>')?;
        if s[..tag_end].ends_with('/') {
            return Some(start..tag_end + 1);
        }
        let close = format!("</{tag}>");
        let end = tag_end + s[tag_end..].find(&close)? + close.len();
        return Some(start..end);
    }
}

/// The first `<tag>…</tag>` in `s`, tags included.
fn section<'a>(s: &'a str, tag: &str) -> Option<&'a str> {
    section_span(s, tag).map(|r| &s[r])
}

/// What is between a section's opening and closing tags.
fn inner<'a>(section: &'a str, tag: &str) -> &'a str {
    let Some(open_end) = section.find('>') else {
        return "";
    };
    if section[..open_end].ends_with('/') {
        return "";
    }
    let close = format!("</{tag}>");
    section[open_end + 1..]
        .strip_suffix(close.as_str())
        .unwrap_or(&section[open_end + 1..])
}

/// The text of the first `<tag>` in `s`, `None` when absent or blank.
fn element_text(s: &str, tag: &str) -> Option<String> {
    section(s, tag)
        .map(|el| text(inner(el, tag)))
        .filter(|t| !t.is_empty())
}

/// The text of markup: tags dropped, CDATA and entities decoded, whitespace collapsed.
fn text(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while !rest.is_empty() {
        if let Some(cdata) = rest.strip_prefix("<![CDATA[") {
            let end = cdata.find("]]>").unwrap_or(cdata.len());
            out.push_str(&cdata[..end]);
            rest = cdata.get(end + 3..).unwrap_or("");
        } else if rest.starts_with('<') {
            let end = rest.find('>').map_or(rest.len(), |i| i + 1);
            out.push(' ');
            rest = &rest[end..];
        } else {
            let end = rest.find('<').unwrap_or(rest.len());
            out.push_str(&unescape(&rest[..end]));
            rest = &rest[end..];
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Decodes the five XML entities and numeric character references; others stay as written.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let tail = &rest[amp..];
        let Some(semi) = tail.find(';').filter(|&i| i <= 10) else {
            out.push('&');
            rest = &tail[1..];
            continue;
        };
        let entity = &tail[1..semi];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            e if e.starts_with("#x") || e.starts_with("#X") => u32::from_str_radix(&e[2..], 16)
                .ok()
                .and_then(char::from_u32),
            e if e.starts_with('#') => e[1..].parse().ok().and_then(char::from_u32),
            _ => None,
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &tail[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SVG: &str = r#"<svg><metadata><rdf:RDF><cc:Work rdf:about="">
        <dc:title>Red &amp; white
          lighthouse</dc:title>
        <dc:description><![CDATA[A <tall> tower]]> by the sea &#233;t&#xE9;</dc:description>
        <dc:subject><rdf:Bag><rdf:li>sea</rdf:li><rdf:li></rdf:li><rdf:li>tower</rdf:li>
          <rdf:li>sea</rdf:li></rdf:Bag></dc:subject>
        <dc:creator><cc:Agent><dc:title>Someone</dc:title></cc:Agent></dc:creator>
      </cc:Work></rdf:RDF></metadata><title>ignored</title></svg>"#;

    #[test]
    fn reads_title_description_and_keywords_of_the_work() {
        let meta = SvgMetadata::parse(SVG);
        assert_eq!(meta.title.as_deref(), Some("Red & white lighthouse"));
        assert_eq!(
            meta.description.as_deref(),
            Some("A <tall> tower by the sea été")
        );
        assert_eq!(meta.keywords, vec!["sea", "tower"]);
        assert_eq!(
            meta.caption().as_deref(),
            Some("Red & white lighthouse. A <tall> tower by the sea été. sea, tower")
        );
    }

    #[test]
    fn agent_titles_are_not_the_work_title() {
        let svg = "<cc:Work><dc:creator><cc:Agent><dc:title>Nicu</dc:title></cc:Agent>\
                   </dc:creator><dc:title/><dc:description></dc:description></cc:Work>";
        let meta = SvgMetadata::parse(svg);
        assert_eq!(meta, SvgMetadata::default());
        assert_eq!(meta.caption(), None);
    }

    #[test]
    fn no_metadata_and_broken_markup_give_nothing() {
        assert_eq!(
            SvgMetadata::parse("<svg><path d='M0'/></svg>"),
            SvgMetadata::default()
        );
        assert_eq!(
            SvgMetadata::parse("<cc:Work><dc:title>open"),
            SvgMetadata::default()
        );
        assert_eq!(unescape("a &bogus; & b &#xZZ;"), "a &bogus; & b &#xZZ;");
    }
}
