//! EARS (Easy Approach to Requirements Syntax): parse a requirement sentence into a typed form,
//! or say precisely why it does not conform, and render it back to canonical text.
//!
//! | pattern | form |
//! |---|---|
//! | ubiquitous | `The <system> SHALL <response>` |
//! | event | `WHEN <trigger>, the <system> SHALL <response>` |
//! | state | `WHILE <state>, the <system> SHALL <response>` |
//! | unwanted | `IF <condition>, THEN the <system> SHALL <response>` |
//! | optional | `WHERE <feature>, the <system> SHALL <response>` |
//! | complex | several preconditions, e.g. `WHILE <state>, WHEN <trigger>, the <system> SHALL <response>` |
//!
//! Keywords are matched case-insensitively; the modal verb is one of SHALL, SHOULD, MAY and
//! MUST, optionally followed by NOT. Each keyword may open at most one clause; an IF clause must
//! be the last precondition and is closed by THEN. A clause ends at the first comma that is
//! followed by another keyword or by `the` (so clause texts may contain commas), else at its
//! first comma. The word `the` before the system name is optional and not part of the name.
//!
//! ```
//! use omoi_core::ears::{EarsClause, EarsError, EarsKeyword, EarsPattern, EarsRequirement, ModalKeyword};
//!
//! let r: EarsRequirement = "WHEN a title is given, the slugify function SHALL return a lowercase slug".parse().unwrap();
//! assert_eq!(r.pattern, EarsPattern::Event { trigger: "a title is given".into() });
//! assert_eq!(r.system, "slugify function");
//! assert_eq!(r.modal.keyword, ModalKeyword::Shall);
//! assert_eq!(r.response, "return a lowercase slug");
//! assert_eq!(r.render(), "WHEN a title is given, the slugify function SHALL return a lowercase slug");
//!
//! let complex = EarsRequirement::parse("While offline, when a save is requested, the app shall not upload").unwrap();
//! assert_eq!(complex.clauses(), vec![EarsClause::While("offline".into()), EarsClause::When("a save is requested".into())]);
//! assert!(complex.modal.negated);
//!
//! assert_eq!(EarsRequirement::parse("WHEN x the system SHALL y"), Err(EarsError::MissingComma { keyword: EarsKeyword::When }));
//! assert_eq!(EarsRequirement::parse("The system returns a slug"), Err(EarsError::MissingModal));
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A modal verb of a requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModalKeyword {
    /// A binding requirement.
    Shall,
    /// A recommendation.
    Should,
    /// A permission.
    May,
    /// A binding requirement (synonym of SHALL).
    Must,
}

impl ModalKeyword {
    /// Every modal keyword.
    pub const ALL: &'static [ModalKeyword] =
        &[ModalKeyword::Shall, ModalKeyword::Should, ModalKeyword::May, ModalKeyword::Must];

    /// The keyword in upper case, as rendered.
    pub const fn as_str(self) -> &'static str {
        match self {
            ModalKeyword::Shall => "SHALL",
            ModalKeyword::Should => "SHOULD",
            ModalKeyword::May => "MAY",
            ModalKeyword::Must => "MUST",
        }
    }

    fn from_word(word: &str) -> Option<ModalKeyword> {
        ModalKeyword::ALL.iter().copied().find(|k| k.as_str().eq_ignore_ascii_case(word))
    }
}

impl fmt::Display for ModalKeyword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The modal verb with its polarity: `SHALL`, `MUST NOT`, …
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Modal {
    /// The verb.
    pub keyword: ModalKeyword,
    /// Followed by NOT.
    pub negated: bool,
}

impl fmt::Display for Modal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.keyword.as_str())?;
        if self.negated {
            f.write_str(" NOT")?;
        }
        Ok(())
    }
}

/// A keyword that opens a precondition clause.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EarsKeyword {
    /// Event trigger.
    When,
    /// State precondition.
    While,
    /// Optional feature.
    Where,
    /// Unwanted condition (closed by THEN).
    If,
}

impl EarsKeyword {
    /// Every clause keyword.
    pub const ALL: &'static [EarsKeyword] =
        &[EarsKeyword::When, EarsKeyword::While, EarsKeyword::Where, EarsKeyword::If];

    /// The keyword in upper case.
    pub const fn as_str(self) -> &'static str {
        match self {
            EarsKeyword::When => "WHEN",
            EarsKeyword::While => "WHILE",
            EarsKeyword::Where => "WHERE",
            EarsKeyword::If => "IF",
        }
    }

    fn from_word(word: &str) -> Option<EarsKeyword> {
        EarsKeyword::ALL.iter().copied().find(|k| k.as_str().eq_ignore_ascii_case(word))
    }
}

impl fmt::Display for EarsKeyword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One precondition clause with its text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "keyword", content = "text")]
pub enum EarsClause {
    /// `WHEN <trigger>`
    When(String),
    /// `WHILE <state>`
    While(String),
    /// `WHERE <feature>`
    Where(String),
    /// `IF <condition>` (rendered with `, THEN`)
    If(String),
}

impl EarsClause {
    /// The keyword opening the clause.
    pub fn keyword(&self) -> EarsKeyword {
        match self {
            EarsClause::When(_) => EarsKeyword::When,
            EarsClause::While(_) => EarsKeyword::While,
            EarsClause::Where(_) => EarsKeyword::Where,
            EarsClause::If(_) => EarsKeyword::If,
        }
    }

    /// The clause's text, without the keyword.
    pub fn text(&self) -> &str {
        match self {
            EarsClause::When(t) | EarsClause::While(t) | EarsClause::Where(t) | EarsClause::If(t) => t,
        }
    }

    fn new(keyword: EarsKeyword, text: String) -> Self {
        match keyword {
            EarsKeyword::When => EarsClause::When(text),
            EarsKeyword::While => EarsClause::While(text),
            EarsKeyword::Where => EarsClause::Where(text),
            EarsKeyword::If => EarsClause::If(text),
        }
    }
}

/// The EARS pattern of a requirement, with its precondition texts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "pattern")]
pub enum EarsPattern {
    /// Always active: no precondition.
    Ubiquitous,
    /// `WHEN <trigger>`.
    Event {
        /// The triggering event.
        trigger: String,
    },
    /// `WHILE <state>`.
    State {
        /// The state in which the requirement holds.
        state: String,
    },
    /// `IF <condition>, THEN`: the response to an unwanted situation.
    Unwanted {
        /// The unwanted condition.
        condition: String,
    },
    /// `WHERE <feature>`: applies where a feature is present.
    Optional {
        /// The feature.
        feature: String,
    },
    /// Two or more preconditions, in sentence order (an IF clause, if any, last).
    Complex {
        /// The clauses.
        clauses: Vec<EarsClause>,
    },
}

/// A requirement in EARS form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EarsRequirement {
    /// Pattern and precondition texts.
    pub pattern: EarsPattern,
    /// The system (or component) the requirement binds, without a leading `the`.
    pub system: String,
    /// Modal verb and polarity.
    pub modal: Modal,
    /// What the system does.
    pub response: String,
}

/// Why a sentence is not an EARS requirement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EarsError {
    /// Nothing to parse.
    #[error("requirement text is empty")]
    Empty,
    /// No SHALL, SHOULD, MAY or MUST in the main clause.
    #[error("missing modal verb (SHALL, SHOULD, MAY or MUST)")]
    MissingModal,
    /// The modal verb is not preceded by the system's name.
    #[error("missing system name before {modal} (expected \"the <system> {modal} …\")")]
    MissingSystem {
        /// The modal verb found.
        modal: ModalKeyword,
    },
    /// Nothing follows the modal verb.
    #[error("missing response after {modal}")]
    MissingResponse {
        /// The modal verb found.
        modal: Modal,
    },
    /// A WHEN, WHILE or WHERE clause is not closed by a comma.
    #[error("{keyword} clause not followed by a comma")]
    MissingComma {
        /// The clause's keyword.
        keyword: EarsKeyword,
    },
    /// A keyword is followed directly by the comma (or THEN) closing its clause.
    #[error("{keyword} clause is empty")]
    EmptyClause {
        /// The clause's keyword.
        keyword: EarsKeyword,
    },
    /// An IF clause is not closed by THEN.
    #[error("IF clause without THEN")]
    MissingThen,
    /// THEN appears without an IF clause before it.
    #[error("THEN without a preceding IF clause")]
    ThenWithoutIf,
    /// A keyword opens two clauses.
    #[error("more than one {keyword} clause")]
    DuplicateClause {
        /// The repeated keyword.
        keyword: EarsKeyword,
    },
    /// A clause follows `IF …, THEN`, where the system's response belongs.
    #[error("{keyword} clause after IF … THEN (the IF clause must be the last precondition)")]
    ClauseAfterIf {
        /// The keyword found after THEN.
        keyword: EarsKeyword,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token<'a> {
    Word(&'a str),
    Comma,
}

impl<'a> Token<'a> {
    fn word(&self) -> Option<&'a str> {
        match self {
            Token::Word(w) => Some(w),
            Token::Comma => None,
        }
    }

    fn is_word(&self, w: &str) -> bool {
        self.word().is_some_and(|x| x.eq_ignore_ascii_case(w))
    }
}

fn tokenize(text: &str) -> Vec<Token<'_>> {
    let mut out = Vec::new();
    for chunk in text.split_whitespace() {
        let mut rest = chunk;
        while let Some(i) = rest.find(',') {
            if i > 0 {
                out.push(Token::Word(&rest[..i]));
            }
            out.push(Token::Comma);
            rest = &rest[i + 1..];
        }
        if !rest.is_empty() {
            out.push(Token::Word(rest));
        }
    }
    out
}

/// Joins tokens back into normalized text: words separated by one space, commas attached.
fn join(tokens: &[Token<'_>]) -> String {
    let mut s = String::new();
    for t in tokens {
        match t {
            Token::Word(w) => {
                if !s.is_empty() {
                    s.push(' ');
                }
                s.push_str(w);
            }
            Token::Comma => s.push(','),
        }
    }
    s
}

fn has_word(tokens: &[Token<'_>]) -> bool {
    tokens.iter().any(|t| t.word().is_some())
}

fn keyword_of(t: &Token<'_>) -> Option<EarsKeyword> {
    t.word().and_then(EarsKeyword::from_word)
}

impl EarsRequirement {
    /// Parses `text` (see the [module docs](self) for the grammar).
    pub fn parse(text: &str) -> Result<EarsRequirement, EarsError> {
        let mut trimmed = text.trim();
        while let Some(rest) = trimmed.strip_suffix('.') {
            trimmed = rest.trim_end();
        }
        let tokens = tokenize(trimmed);
        if !has_word(&tokens) {
            return Err(EarsError::Empty);
        }
        let mut clauses: Vec<EarsClause> = Vec::new();
        let mut i = 0;
        while let Some(keyword) = tokens.get(i).and_then(keyword_of) {
            if clauses.iter().any(|c| c.keyword() == keyword) {
                return Err(EarsError::DuplicateClause { keyword });
            }
            let body = i + 1;
            if keyword == EarsKeyword::If {
                let then = (body..tokens.len()).find(|&j| tokens[j].is_word("then")).ok_or(EarsError::MissingThen)?;
                let mut end = then;
                while end > body && tokens[end - 1] == Token::Comma {
                    end -= 1;
                }
                if !has_word(&tokens[body..end]) {
                    return Err(EarsError::EmptyClause { keyword });
                }
                clauses.push(EarsClause::If(join(&tokens[body..end])));
                i = then + 1;
                if let Some(next) = tokens.get(i).and_then(keyword_of) {
                    return Err(EarsError::ClauseAfterIf { keyword: next });
                }
                break;
            }
            let commas: Vec<usize> = (body..tokens.len()).filter(|&j| tokens[j] == Token::Comma).collect();
            let opens_next = |j: usize| {
                tokens.get(j + 1).is_some_and(|t| keyword_of(t).is_some() || t.is_word("the") || t.is_word("then"))
            };
            let end = commas
                .iter()
                .copied()
                .find(|&j| opens_next(j))
                .or_else(|| commas.first().copied())
                .ok_or(EarsError::MissingComma { keyword })?;
            if !has_word(&tokens[body..end]) {
                return Err(EarsError::EmptyClause { keyword });
            }
            clauses.push(EarsClause::new(keyword, join(&tokens[body..end])));
            i = end + 1;
        }
        let main = &tokens[i.min(tokens.len())..];
        if main.first().is_some_and(|t| t.is_word("then")) {
            return Err(EarsError::ThenWithoutIf);
        }
        let m = main.iter().position(|t| t.word().and_then(ModalKeyword::from_word).is_some());
        let m = m.ok_or(EarsError::MissingModal)?;
        let keyword = main[m].word().and_then(ModalKeyword::from_word).ok_or(EarsError::MissingModal)?;
        let mut subject = &main[..m];
        if subject.first().is_some_and(|t| t.is_word("the")) {
            subject = &subject[1..];
        }
        if !has_word(subject) {
            return Err(EarsError::MissingSystem { modal: keyword });
        }
        let system = join(subject);
        let negated = main.get(m + 1).is_some_and(|t| t.is_word("not"));
        let modal = Modal { keyword, negated };
        let rest = &main[m + 1 + usize::from(negated)..];
        if !has_word(rest) {
            return Err(EarsError::MissingResponse { modal });
        }
        let response = join(rest);
        let pattern = match clauses.len() {
            0 => EarsPattern::Ubiquitous,
            1 => match clauses.remove(0) {
                EarsClause::When(trigger) => EarsPattern::Event { trigger },
                EarsClause::While(state) => EarsPattern::State { state },
                EarsClause::Where(feature) => EarsPattern::Optional { feature },
                EarsClause::If(condition) => EarsPattern::Unwanted { condition },
            },
            _ => EarsPattern::Complex { clauses },
        };
        Ok(EarsRequirement { pattern, system, modal, response })
    }

    /// The preconditions in sentence order (empty for a ubiquitous requirement).
    pub fn clauses(&self) -> Vec<EarsClause> {
        match &self.pattern {
            EarsPattern::Ubiquitous => Vec::new(),
            EarsPattern::Event { trigger } => vec![EarsClause::When(trigger.clone())],
            EarsPattern::State { state } => vec![EarsClause::While(state.clone())],
            EarsPattern::Unwanted { condition } => vec![EarsClause::If(condition.clone())],
            EarsPattern::Optional { feature } => vec![EarsClause::Where(feature.clone())],
            EarsPattern::Complex { clauses } => clauses.clone(),
        }
    }

    /// Whether the requirement has a precondition (WHEN, WHILE, WHERE or IF).
    pub fn has_precondition(&self) -> bool {
        self.pattern != EarsPattern::Ubiquitous
    }

    /// Canonical text: upper-case keywords, one space between words, `the` before the system,
    /// no final period.
    pub fn render(&self) -> String {
        let mut s = String::new();
        for clause in self.clauses() {
            match clause {
                EarsClause::If(text) => {
                    s.push_str(&format!("IF {text}, THEN "));
                }
                other => s.push_str(&format!("{} {}, ", other.keyword(), other.text())),
            }
        }
        let article = if s.is_empty() { "The" } else { "the" };
        s.push_str(&format!("{article} {} {} {}", self.system, self.modal, self.response));
        s
    }
}

impl fmt::Display for EarsRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

impl FromStr for EarsRequirement {
    type Err = EarsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EarsRequirement::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(s: &str) -> Result<EarsRequirement, EarsError> {
        EarsRequirement::parse(s)
    }

    #[test]
    fn ubiquitous_requirement() {
        let r = parse("The system shall store every slug in lower case.").unwrap();
        assert_eq!(r.pattern, EarsPattern::Ubiquitous);
        assert_eq!(r.system, "system");
        assert_eq!(r.modal, Modal { keyword: ModalKeyword::Shall, negated: false });
        assert_eq!(r.response, "store every slug in lower case");
        assert!(!r.has_precondition());
        assert_eq!(r.render(), "The system SHALL store every slug in lower case");
    }

    #[test]
    fn event_requirement() {
        let r = parse("WHEN the user submits a title, THE SYSTEM SHALL return its slug").unwrap();
        assert_eq!(r.pattern, EarsPattern::Event { trigger: "the user submits a title".into() });
        assert_eq!(r.system, "SYSTEM");
        assert_eq!(r.response, "return its slug");
    }

    #[test]
    fn state_requirement() {
        let r = parse("While the cache is warm, the resolver should answer from memory").unwrap();
        assert_eq!(r.pattern, EarsPattern::State { state: "the cache is warm".into() });
        assert_eq!(r.modal.keyword, ModalKeyword::Should);
        assert_eq!(r.system, "resolver");
    }

    #[test]
    fn unwanted_requirement_with_and_without_comma_before_then() {
        let a = parse("IF the input is empty, THEN the slugify function MUST NOT raise an exception").unwrap();
        assert_eq!(a.pattern, EarsPattern::Unwanted { condition: "the input is empty".into() });
        assert_eq!(a.modal, Modal { keyword: ModalKeyword::Must, negated: true });
        assert_eq!(a.response, "raise an exception");
        let b = parse("if the input is empty then the slugify function must not raise an exception").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.render(), "IF the input is empty, THEN the slugify function MUST NOT raise an exception");
    }

    #[test]
    fn optional_requirement() {
        let r = parse("Where unicode transliteration is enabled, the system may map ü to u").unwrap();
        assert_eq!(r.pattern, EarsPattern::Optional { feature: "unicode transliteration is enabled".into() });
        assert_eq!(r.modal.keyword, ModalKeyword::May);
    }

    #[test]
    fn complex_requirement_keeps_clause_order() {
        let r = parse("WHERE a max length is configured, WHILE in strict mode, WHEN a slug is longer, the system SHALL truncate it at a word boundary").unwrap();
        assert_eq!(
            r.pattern,
            EarsPattern::Complex {
                clauses: vec![
                    EarsClause::Where("a max length is configured".into()),
                    EarsClause::While("in strict mode".into()),
                    EarsClause::When("a slug is longer".into()),
                ]
            }
        );
        let unwanted = parse("While syncing, if the network drops, then the client shall retry").unwrap();
        assert_eq!(
            unwanted.clauses(),
            vec![EarsClause::While("syncing".into()), EarsClause::If("the network drops".into())]
        );
        assert_eq!(parse(&unwanted.render()).unwrap(), unwanted);
    }

    #[test]
    fn clause_text_may_contain_commas() {
        let r = parse("WHEN a title has spaces, punctuation, or accents, the system SHALL replace them with hyphens")
            .unwrap();
        assert_eq!(r.pattern, EarsPattern::Event { trigger: "a title has spaces, punctuation, or accents".into() });
        assert_eq!(r.system, "system");
    }

    #[test]
    fn subject_without_article_is_accepted() {
        let r = parse("slugify() shall return a string").unwrap();
        assert_eq!(r.system, "slugify()");
        assert_eq!(r.render(), "The slugify() SHALL return a string");
        assert_eq!(parse(&r.render()).unwrap(), r);
    }

    #[test]
    fn errors_say_what_is_wrong() {
        assert_eq!(parse("   "), Err(EarsError::Empty));
        assert_eq!(parse("."), Err(EarsError::Empty));
        assert_eq!(parse("The system returns a slug"), Err(EarsError::MissingModal));
        assert_eq!(
            parse("WHEN x happens the system shall y"),
            Err(EarsError::MissingComma { keyword: EarsKeyword::When })
        );
        assert_eq!(
            parse("While idle the system shall sleep"),
            Err(EarsError::MissingComma { keyword: EarsKeyword::While })
        );
        assert_eq!(parse("WHEN , the system shall y"), Err(EarsError::EmptyClause { keyword: EarsKeyword::When }));
        assert_eq!(parse("IF x, the system shall y"), Err(EarsError::MissingThen));
        assert_eq!(parse("IF , THEN the system shall y"), Err(EarsError::EmptyClause { keyword: EarsKeyword::If }));
        assert_eq!(parse("Then the system shall y"), Err(EarsError::ThenWithoutIf));
        assert_eq!(
            parse("WHEN a, WHEN b, the system shall y"),
            Err(EarsError::DuplicateClause { keyword: EarsKeyword::When })
        );
        assert_eq!(
            parse("IF a, THEN WHEN b, the system shall y"),
            Err(EarsError::ClauseAfterIf { keyword: EarsKeyword::When })
        );
        assert_eq!(parse("WHEN a, shall y"), Err(EarsError::MissingSystem { modal: ModalKeyword::Shall }));
        assert_eq!(
            parse("The system shall not"),
            Err(EarsError::MissingResponse { modal: Modal { keyword: ModalKeyword::Shall, negated: true } })
        );
        assert_eq!(
            EarsError::MissingComma { keyword: EarsKeyword::When }.to_string(),
            "WHEN clause not followed by a comma"
        );
        assert_eq!(EarsError::MissingModal.to_string(), "missing modal verb (SHALL, SHOULD, MAY or MUST)");
    }

    #[test]
    fn serde_round_trip() {
        let r = parse("While a, if b, then the system shall c").unwrap();
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<EarsRequirement>(&json).unwrap(), r);
    }

    // ---- property tests ----

    const RESERVED: &[&str] = &["when", "while", "where", "if", "then", "the", "shall", "should", "may", "must", "not"];

    fn word() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9_()ü-]{1,8}".prop_filter("reserved word", |w| !RESERVED.contains(&w.to_ascii_lowercase().as_str()))
    }

    fn phrase(max: usize) -> impl Strategy<Value = String> {
        proptest::collection::vec(word(), 1..max).prop_map(|w| w.join(" "))
    }

    /// Response text: any words (keywords included, except `not` first), commas allowed.
    fn response() -> impl Strategy<Value = String> {
        (
            word(),
            proptest::collection::vec(
                prop_oneof![word(), Just("when".to_owned()), Just("shall".to_owned()), Just("a,".to_owned())],
                0..6,
            ),
        )
            .prop_map(|(first, rest)| {
                let mut s = first;
                for w in rest {
                    s.push(' ');
                    s.push_str(&w);
                }
                s.trim_end_matches(',').to_owned()
            })
    }

    fn clause() -> impl Strategy<Value = EarsClause> {
        (proptest::sample::select(EarsKeyword::ALL.to_vec()), phrase(5)).prop_map(|(k, t)| EarsClause::new(k, t))
    }

    fn requirement() -> impl Strategy<Value = EarsRequirement> {
        let modal = (proptest::sample::select(ModalKeyword::ALL.to_vec()), any::<bool>())
            .prop_map(|(keyword, negated)| Modal { keyword, negated });
        (proptest::collection::vec(clause(), 0..5), phrase(4), modal, response()).prop_map(
            |(raw, system, modal, response)| {
                // Unique keywords; an IF clause, if any, goes last.
                let mut clauses: Vec<EarsClause> = Vec::new();
                for c in raw {
                    if !clauses.iter().any(|x| x.keyword() == c.keyword()) {
                        clauses.push(c);
                    }
                }
                clauses.sort_by_key(|c| c.keyword() == EarsKeyword::If);
                let pattern = match clauses.len() {
                    0 => EarsPattern::Ubiquitous,
                    1 => match clauses.remove(0) {
                        EarsClause::When(trigger) => EarsPattern::Event { trigger },
                        EarsClause::While(state) => EarsPattern::State { state },
                        EarsClause::Where(feature) => EarsPattern::Optional { feature },
                        EarsClause::If(condition) => EarsPattern::Unwanted { condition },
                    },
                    _ => EarsPattern::Complex { clauses },
                };
                EarsRequirement { pattern, system, modal, response }
            },
        )
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in ".{0,200}") {
            let _ = EarsRequirement::parse(&s);
        }

        #[test]
        fn parse_never_panics_on_keyword_soup(
            words in proptest::collection::vec(
                prop_oneof![Just("WHEN"), Just("while"), Just("IF"), Just("then"), Just(","), Just("the"), Just("shall"), Just("not"), Just("x"), Just("ü,"), Just(".")],
                0..20,
            )
        ) {
            let s = words.join(" ");
            if let Ok(r) = EarsRequirement::parse(&s) {
                // Whatever parses renders to text that parses to the same requirement.
                prop_assert_eq!(EarsRequirement::parse(&r.render()), Ok(r));
            }
        }

        #[test]
        fn render_then_parse_is_identity(r in requirement()) {
            let text = r.render();
            prop_assert_eq!(EarsRequirement::parse(&text), Ok(r.clone()), "{}", text);
            // Lower-casing keywords changes nothing either.
            let lower = text
                .split(' ')
                .map(|w| {
                    let bare = w.trim_end_matches(',');
                    if RESERVED.contains(&bare.to_ascii_lowercase().as_str()) { w.to_ascii_lowercase() } else { w.to_owned() }
                })
                .collect::<Vec<_>>()
                .join(" ");
            prop_assert_eq!(EarsRequirement::parse(&lower), Ok(r));
        }
    }
}
