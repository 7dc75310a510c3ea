//! Thunderbird's AutoConfig file (`mozilla.cfg`, named by `general.config.filename`), evaluated
//! without running JavaScript.
//!
//! Thunderbird un-obscures the file (every byte minus `general.config.obscure_value` when that is
//! above 0), skips its first line, and runs the rest as privileged JavaScript with `prefcalls.js`:
//! `pref()` sets the user value, `defaultPref()` the default, `lockPref()` unlocks, sets the
//! default and locks, `unlockPref()`, `clearPref()` removes the user value, `getPref()` reads,
//! `getenv()` reads Thunderbird's environment (measured: docs/thunderbird-layers-measured.md).
//!
//! This is an abstract interpreter for what administrators write: literal and variable values,
//! `+` concatenation, `getenv()` of the variables the caller knows, `var`/`let`/`const`,
//! `try`/`catch`, `if`/`else`. It never claims to know what it cannot: a value it cannot compute
//! is [`CfgValue::Unknown`] with the reason; a pref set only under a condition has an unknown
//! value; code it does not model that could change prefs (`Services.prefs.*`, `Components`,
//! functions, loops, unknown calls, computed pref names) is a [`CfgTarget::Any`] effect. A
//! syntax error is a [`CfgError`] with line and column: Thunderbird shows an error then.
//!
//! Bounded: at most [`MAX_BYTES`] bytes and [`MAX_DEPTH`] nested brackets.

use std::collections::BTreeMap;
use std::fmt;

use super::prefs::PrefValue;

/// The largest AutoConfig file evaluated.
pub const MAX_BYTES: usize = 1 << 20;
/// The deepest bracket nesting evaluated.
pub const MAX_DEPTH: usize = 64;

/// A value a statement sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CfgValue {
    Known(PrefValue),
    /// What the agent cannot know, and why.
    Unknown(String),
}

/// What a statement does to its pref.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CfgOp {
    User(CfgValue),
    Default(CfgValue),
    Lock(CfgValue),
    Unlock,
    Clear,
}

/// Which pref a statement acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CfgTarget {
    Pref(String),
    /// A name computed at run time, or code we do not model that may change any pref.
    Any(String),
}

/// One effect of the file, in execution order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CfgEffect {
    /// 1-based line in the un-obscured file.
    pub line: usize,
    pub target: CfgTarget,
    pub op: CfgOp,
    /// The statement's source text, trimmed and shortened.
    pub text: String,
}

/// What the file does, as far as it can be known.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AutoConfig {
    pub effects: Vec<CfgEffect>,
}

/// Why Thunderbird cannot run the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CfgError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for CfgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.message
        )
    }
}

impl std::error::Error for CfgError {}

/// Evaluates an AutoConfig file as stored. `obscure`: `general.config.obscure_value`; `env`: the
/// environment variables the agent knows for the user whose Thunderbird runs it.
pub fn evaluate(
    bytes: &[u8],
    obscure: i64,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<AutoConfig, CfgError> {
    if bytes.len() > MAX_BYTES {
        return Err(CfgError {
            line: 1,
            column: 1,
            message: format!(
                "{} bytes is more than the {MAX_BYTES} evaluated",
                bytes.len()
            ),
        });
    }
    let shift = if obscure > 0 {
        (obscure.rem_euclid(256)) as u8
    } else {
        0
    };
    let plain: Vec<u8> = bytes.iter().map(|b| b.wrapping_sub(shift)).collect();
    // The first line is skipped (nsReadConfig: skipFirstLine); without a line break the whole
    // file is that line.
    let Some(nl) = plain.iter().position(|&b| b == b'\n') else {
        return Ok(AutoConfig::default());
    };
    let text = String::from_utf8_lossy(&plain[nl + 1..]);
    let tokens = tokenize(&text, 2)?;
    check_brackets(&tokens)?;
    let mut eval = Eval {
        tokens: &tokens,
        src: &text,
        env,
        vars: BTreeMap::new(),
        effects: Vec::new(),
    };
    let all = 0..tokens.len();
    eval.block(all, None, 0)?;
    Ok(AutoConfig {
        effects: eval.effects,
    })
}

// --- tokens ---------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Str(String),
    Num(f64),
    Ident(String),
    Punct(&'static str),
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    line: usize,
    column: usize,
    /// Byte offsets in the source (for statement texts).
    start: usize,
    end: usize,
    /// A line break comes before this token.
    newline_before: bool,
}

const PUNCTS: &[&str] = &[
    ">>>=", "===", "!==", "**=", "<<=", ">>=", ">>>", "...", "&&=", "||=", "??=", "=>", "==", "!=",
    "<=", ">=", "&&", "||", "??", "?.", "++", "--", "+=", "-=", "*=", "/=", "%=", "&=", "|=", "^=",
    "**", "<<", ">>", "{", "}", "(", ")", "[", "]", ";", ",", "<", ">", "+", "-", "*", "/", "%",
    "&", "|", "^", "!", "~", "?", ":", "=", ".", "@", "#",
];

fn err(line: usize, column: usize, message: impl Into<String>) -> CfgError {
    CfgError {
        line,
        column,
        message: message.into(),
    }
}

fn tokenize(text: &str, first_line: usize) -> Result<Vec<Token>, CfgError> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut out = Vec::new();
    let (mut line, mut col) = (first_line, 1usize);
    let mut i = 0;
    let mut newline = false;
    let advance = |c: char, line: &mut usize, col: &mut usize| {
        if c == '\n' {
            *line += 1;
            *col = 1;
        } else {
            *col += 1;
        }
    };
    while i < chars.len() {
        let (pos, c) = chars[i];
        let next = chars.get(i + 1).map(|&(_, c)| c);
        if c == '\n' {
            newline = true;
        }
        if c.is_whitespace() {
            advance(c, &mut line, &mut col);
            i += 1;
            continue;
        }
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i].1 != '\n' {
                i += 1;
                col += 1;
            }
            continue;
        }
        if c == '/' && next == Some('*') {
            let (l0, c0) = (line, col);
            i += 2;
            col += 2;
            loop {
                let Some(&(_, c)) = chars.get(i) else {
                    return Err(err(l0, c0, "a /* comment is never closed"));
                };
                if c == '*' && chars.get(i + 1).map(|p| p.1) == Some('/') {
                    i += 2;
                    col += 2;
                    break;
                }
                if c == '\n' {
                    newline = true;
                }
                advance(c, &mut line, &mut col);
                i += 1;
            }
            continue;
        }
        let (tl, tc) = (line, col);
        let start = pos;
        let tok = if c == '"' || c == '\'' || c == '`' {
            let quote = c;
            let mut s = String::new();
            i += 1;
            col += 1;
            loop {
                let Some(&(_, c)) = chars.get(i) else {
                    return Err(err(tl, tc, "a string is never closed"));
                };
                if c == quote {
                    i += 1;
                    col += 1;
                    break;
                }
                if c == '\n' && quote != '`' {
                    return Err(err(tl, tc, "a string is never closed on its line"));
                }
                if c == '\\' {
                    let Some(&(_, e)) = chars.get(i + 1) else {
                        return Err(err(tl, tc, "a string is never closed"));
                    };
                    i += 2;
                    col += 2;
                    match e {
                        'n' => s.push('\n'),
                        't' => s.push('\t'),
                        'r' => s.push('\r'),
                        '0' => s.push('\0'),
                        'b' => s.push('\u{8}'),
                        'f' => s.push('\u{c}'),
                        'v' => s.push('\u{b}'),
                        '\n' => {
                            line += 1;
                            col = 1;
                        }
                        'x' | 'u' => {
                            let n = if e == 'x' { 2 } else { 4 };
                            let hex: String =
                                chars.iter().skip(i).take(n).map(|&(_, c)| c).collect();
                            let code = (hex.len() == n)
                                .then(|| u32::from_str_radix(&hex, 16).ok())
                                .flatten()
                                .and_then(char::from_u32)
                                .ok_or_else(|| err(line, col, "a bad \\x or \\u escape"))?;
                            s.push(code);
                            i += n;
                            col += n;
                        }
                        other => s.push(other),
                    }
                    continue;
                }
                if quote == '`' && c == '$' && chars.get(i + 1).map(|p| p.1) == Some('{') {
                    // A template with substitutions: not evaluated.
                    s.push('\u{fffd}');
                }
                s.push(c);
                advance(c, &mut line, &mut col);
                i += 1;
            }
            if quote == '`' && s.contains('\u{fffd}') {
                Tok::Ident("`template`".to_owned())
            } else {
                Tok::Str(s)
            }
        } else if c.is_ascii_digit() || (c == '.' && next.is_some_and(|n| n.is_ascii_digit())) {
            let mut j = i;
            while j < chars.len() && (chars[j].1.is_ascii_alphanumeric() || chars[j].1 == '.') {
                j += 1;
            }
            let lit: String = chars[i..j].iter().map(|&(_, c)| c).collect();
            col += j - i;
            i = j;
            let lower = lit.to_ascii_lowercase();
            let n = if let Some(hex) = lower.strip_prefix("0x") {
                i64::from_str_radix(hex, 16).ok().map(|v| v as f64)
            } else {
                lit.parse::<f64>().ok()
            };
            Tok::Num(n.ok_or_else(|| err(tl, tc, format!("{lit:?} is not a number")))?)
        } else if c.is_alphabetic() || c == '_' || c == '$' {
            let mut j = i;
            while j < chars.len()
                && (chars[j].1.is_alphanumeric() || chars[j].1 == '_' || chars[j].1 == '$')
            {
                j += 1;
            }
            let id: String = chars[i..j].iter().map(|&(_, c)| c).collect();
            col += j - i;
            i = j;
            Tok::Ident(id)
        } else {
            let rest = &text[pos..];
            let Some(p) = PUNCTS.iter().find(|p| rest.starts_with(**p)) else {
                return Err(err(tl, tc, format!("unexpected character {c:?}")));
            };
            i += p.chars().count();
            col += p.chars().count();
            Tok::Punct(p)
        };
        let end = chars.get(i).map_or(text.len(), |&(p, _)| p);
        out.push(Token {
            tok,
            line: tl,
            column: tc,
            start,
            end,
            newline_before: std::mem::take(&mut newline),
        });
    }
    Ok(out)
}

fn is_punct(t: &Token, p: &str) -> bool {
    matches!(t.tok, Tok::Punct(q) if q == p)
}

fn is_ident(t: &Token, id: &str) -> bool {
    matches!(&t.tok, Tok::Ident(i) if i == id)
}

/// Brackets balance, `;` never stands inside `(` or `[` (but in a `for (;;)` header), and the
/// nesting stays within [`MAX_DEPTH`].
fn check_brackets(tokens: &[Token]) -> Result<(), CfgError> {
    let mut stack: Vec<(&str, usize, bool)> = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        let Tok::Punct(p) = t.tok else { continue };
        match p {
            "(" | "[" | "{" => {
                if stack.len() >= MAX_DEPTH {
                    return Err(err(t.line, t.column, "brackets nest too deep"));
                }
                let for_header = p == "(" && i > 0 && is_ident(&tokens[i - 1], "for");
                stack.push((p, i, for_header));
            }
            ")" | "]" | "}" => {
                let want = match p {
                    ")" => "(",
                    "]" => "[",
                    _ => "{",
                };
                match stack.pop() {
                    Some((open, _, _)) if open == want => {}
                    Some((open, at, _)) => {
                        let o = &tokens[at];
                        return Err(err(
                            t.line,
                            t.column,
                            format!(
                                "{p:?} closes the {open:?} of line {}, column {}",
                                o.line, o.column
                            ),
                        ));
                    }
                    None => return Err(err(t.line, t.column, format!("{p:?} closes nothing"))),
                }
            }
            ";" => {
                if let Some(&(open, _, for_header)) = stack.last() {
                    if (open == "(" && !for_header) || open == "[" {
                        return Err(err(
                            t.line,
                            t.column,
                            format!(
                                "missing {:?} before \";\"",
                                if open == "(" { ")" } else { "]" }
                            ),
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    if let Some((open, at, _)) = stack.pop() {
        let o = &tokens[at];
        return Err(err(o.line, o.column, format!("{open:?} is never closed")));
    }
    Ok(())
}

// --- evaluation ------------------------------------------------------------------------------

/// A JavaScript value as far as the evaluator knows it.
#[derive(Debug, Clone, PartialEq)]
enum Js {
    Str(String),
    Num(f64),
    Bool(bool),
    Undefined,
    Unknown(String),
}

/// The prefcalls.js functions that change prefs.
const PREF_CALLS: &[&str] = &["pref", "defaultPref", "lockPref", "unlockPref", "clearPref"];
/// prefcalls.js functions that change no pref.
const HARMLESS_CALLS: &[&str] = &[
    "getPref",
    "getenv",
    "displayError",
    "setLDAPVersion",
    "getLDAPAttributes",
    "getLDAPValue",
];

struct Eval<'a> {
    tokens: &'a [Token],
    src: &'a str,
    env: &'a dyn Fn(&str) -> Option<String>,
    vars: BTreeMap<String, Js>,
    effects: Vec<CfgEffect>,
}

/// Under which condition statements run.
type Cond = Option<usize>;

impl Eval<'_> {
    fn text(&self, from: usize, to: usize) -> String {
        if from >= to {
            return String::new();
        }
        let s = &self.src[self.tokens[from].start..self.tokens[to - 1].end];
        let s: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
        if s.chars().count() > 120 {
            s.chars().take(117).collect::<String>() + "..."
        } else {
            s
        }
    }

    /// The index of the bracket closing the one at `open`.
    fn closing(&self, open: usize) -> usize {
        let mut depth = 0usize;
        for (i, t) in self.tokens.iter().enumerate().skip(open) {
            if let Tok::Punct(p) = t.tok {
                match p {
                    "(" | "[" | "{" => depth += 1,
                    ")" | "]" | "}" => {
                        depth -= 1;
                        if depth == 0 {
                            return i;
                        }
                    }
                    _ => {}
                }
            }
        }
        self.tokens.len()
    }

    /// The end (exclusive) of the simple statement starting at `i`, before `end`.
    fn statement_end(&self, i: usize, end: usize) -> usize {
        let mut j = i;
        while j < end {
            let t = &self.tokens[j];
            if is_punct(t, ";") {
                return j;
            }
            if matches!(t.tok, Tok::Punct("(" | "[" | "{")) {
                j = self.closing(j) + 1;
                continue;
            }
            if j > i && t.newline_before && !continues(&self.tokens[j - 1], t) {
                return j;
            }
            j += 1;
        }
        end
    }

    fn any(&mut self, from: usize, to: usize, why: String) {
        let line = self.tokens.get(from).map_or(0, |t| t.line);
        let text = self.text(from, to);
        self.effects.push(CfgEffect {
            line,
            target: CfgTarget::Any(why.clone()),
            op: CfgOp::User(CfgValue::Unknown(why)),
            text,
        });
    }

    /// Statements in `range`; `cond`: the line of the condition they run under.
    fn block(
        &mut self,
        range: std::ops::Range<usize>,
        cond: Cond,
        depth: usize,
    ) -> Result<(), CfgError> {
        if depth > MAX_DEPTH {
            let t = &self.tokens[range.start.min(self.tokens.len() - 1)];
            return Err(err(t.line, t.column, "statements nest too deep"));
        }
        let end = range.end;
        let mut i = range.start;
        while i < end {
            i = self.statement(i, end, cond, depth)?;
        }
        Ok(())
    }

    /// One statement at `i`; returns where the next one starts.
    fn statement(
        &mut self,
        i: usize,
        end: usize,
        cond: Cond,
        depth: usize,
    ) -> Result<usize, CfgError> {
        let Some(t) = self.tokens.get(i).filter(|_| i < end) else {
            // `if (x)`, `catch (e)`, `else` with nothing after them.
            let t = &self.tokens[end.min(self.tokens.len()).saturating_sub(1)];
            return Err(err(t.line, t.column, "a statement is missing after this"));
        };
        if is_punct(t, ";") {
            return Ok(i + 1);
        }
        if is_punct(t, "{") {
            let close = self.closing(i);
            self.block(i + 1..close, cond, depth + 1)?;
            return Ok(close + 1);
        }
        let keyword = match &t.tok {
            Tok::Ident(k) => k.as_str(),
            _ => "",
        };
        match keyword {
            "if" => {
                let (open, line) = (i + 1, t.line);
                if open >= end || !is_punct(&self.tokens[open], "(") {
                    return Err(err(t.line, t.column, "missing \"(\" after if"));
                }
                let close = self.closing(open);
                let mut next = self.statement(close + 1, end, Some(line), depth + 1)?;
                if next < end && is_ident(&self.tokens[next], "else") {
                    next = self.statement(next + 1, end, Some(line), depth + 1)?;
                }
                Ok(next)
            }
            "try" => {
                let mut next = self.statement(i + 1, end, cond, depth + 1)?;
                if next < end && is_ident(&self.tokens[next], "catch") {
                    let line = self.tokens[next].line;
                    let mut body = next + 1;
                    if body < end && is_punct(&self.tokens[body], "(") {
                        body = self.closing(body) + 1;
                    }
                    next = self.statement(body, end, Some(line), depth + 1)?;
                }
                if next < end && is_ident(&self.tokens[next], "finally") {
                    next = self.statement(next + 1, end, cond, depth + 1)?;
                }
                Ok(next)
            }
            "function" | "for" | "while" | "do" | "switch" | "with" | "class" => {
                // Up to the end of its body (and a do-while's condition).
                let mut j = i + 1;
                while j < end && !is_punct(&self.tokens[j], "{") {
                    if matches!(self.tokens[j].tok, Tok::Punct("(" | "[")) {
                        j = self.closing(j);
                    }
                    j += 1;
                }
                let mut stop = if j < end { self.closing(j) + 1 } else { end };
                if keyword == "do" && stop < end && is_ident(&self.tokens[stop], "while") {
                    stop = self.statement_end(stop, end);
                }
                if self.mentions_prefs(i, stop) {
                    let why = format!(
                        "a {keyword} at line {} is not evaluated and changes prefs in ways the \
                         agent cannot follow",
                        t.line
                    );
                    self.any(i, stop, why);
                }
                Ok(stop)
            }
            "var" | "let" | "const" => {
                let stop = self.statement_end(i, end);
                self.declarations(i + 1, stop, cond);
                Ok(stop)
            }
            _ => {
                let stop = self.statement_end(i, end);
                self.expression_statement(i, stop, cond);
                Ok(stop)
            }
        }
    }

    /// Whether tokens in `from..to` can change a pref: a pref call or code we do not model.
    fn mentions_prefs(&self, from: usize, to: usize) -> bool {
        self.tokens[from..to.min(self.tokens.len())]
            .iter()
            .enumerate()
            .any(|(k, t)| match &t.tok {
                Tok::Ident(id) => {
                    PREF_CALLS.contains(&id.as_str())
                        || matches!(
                            id.as_str(),
                            "Services"
                                | "Components"
                                | "Cc"
                                | "Ci"
                                | "Cu"
                                | "ChromeUtils"
                                | "eval"
                                | "Function"
                                | "prefs"
                                | "setTimeout"
                                | "import"
                        )
                        || (!HARMLESS_CALLS.contains(&id.as_str())
                            && self
                                .tokens
                                .get(from + k + 1)
                                .is_some_and(|n| is_punct(n, "(")))
                }
                _ => false,
            })
    }

    fn declarations(&mut self, from: usize, to: usize, cond: Cond) {
        let mut i = from;
        while i < to {
            let Tok::Ident(name) = &self.tokens[i].tok else {
                // Destructuring and the like: not evaluated.
                if self.mentions_prefs(i, to) {
                    self.any(from, to, "a declaration the agent does not evaluate".into());
                }
                return;
            };
            let name = name.clone();
            // This declarator ends at a `,` at depth 0.
            let mut j = i + 1;
            while j < to && !is_punct(&self.tokens[j], ",") {
                if matches!(self.tokens[j].tok, Tok::Punct("(" | "[" | "{")) {
                    j = self.closing(j);
                }
                j += 1;
            }
            let value = if i + 1 < j && is_punct(&self.tokens[i + 1], "=") {
                self.value_of(i + 2, j, from, to)
            } else {
                Js::Undefined
            };
            let value = match cond {
                Some(line) if !matches!(value, Js::Unknown(_)) => Js::Unknown(format!(
                    "{name} is set only when the condition at line {line} holds"
                )),
                _ => value,
            };
            self.vars.insert(name, value);
            i = j + 1;
        }
    }

    /// The value of the expression in `from..to`; an unmodelled call in it becomes an `Any`
    /// effect of the whole statement `stmt_from..stmt_to`.
    fn value_of(&mut self, from: usize, to: usize, stmt_from: usize, stmt_to: usize) -> Js {
        let mut unmodelled = None;
        let v = self.expr(from, to, &mut unmodelled);
        if let Some(why) = unmodelled {
            self.any(stmt_from, stmt_to, why);
        }
        v
    }

    fn expression_statement(&mut self, from: usize, to: usize, cond: Cond) {
        if from >= to {
            return;
        }
        let first = &self.tokens[from];
        // name(args) with nothing after the closing parenthesis.
        if let Tok::Ident(name) = &first.tok {
            let name = name.clone();
            if from + 1 < to && is_punct(&self.tokens[from + 1], "(") {
                let close = self.closing(from + 1);
                if close + 1 == to {
                    if PREF_CALLS.contains(&name.as_str()) {
                        self.pref_call(&name, from, close, to, cond);
                        return;
                    }
                    if HARMLESS_CALLS.contains(&name.as_str()) {
                        // Its arguments may still call something.
                        let mut unmodelled = None;
                        for (a, b) in self.arguments(from + 1, close) {
                            self.expr(a, b, &mut unmodelled);
                        }
                        if let Some(why) = unmodelled {
                            self.any(from, to, why);
                        }
                        return;
                    }
                }
            }
            // name = expr, name += expr
            if from + 1 < to {
                if let Tok::Punct(op @ ("=" | "+=")) = self.tokens[from + 1].tok {
                    let v = self.value_of(from + 2, to, from, to);
                    let v = if op == "+=" {
                        let old = self.vars.get(&name).cloned().unwrap_or(Js::Unknown(format!(
                            "{name} is not declared before line {}",
                            first.line
                        )));
                        add(old, v)
                    } else {
                        v
                    };
                    let v = match cond {
                        Some(line) if !matches!(v, Js::Unknown(_)) => Js::Unknown(format!(
                            "{name} is set only when the condition at line {line} holds"
                        )),
                        _ => v,
                    };
                    self.vars.insert(name, v);
                    return;
                }
            }
        }
        if self.mentions_prefs(from, to) {
            let why = format!(
                "\"{}\" is not evaluated and may change any pref",
                self.text(from, to)
            );
            self.any(from, to, why);
        }
    }

    /// The argument ranges of the call whose parentheses are at `open` and `close`.
    fn arguments(&self, open: usize, close: usize) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        let mut start = open + 1;
        let mut j = open + 1;
        while j < close {
            if matches!(self.tokens[j].tok, Tok::Punct("(" | "[" | "{")) {
                j = self.closing(j) + 1;
                continue;
            }
            if is_punct(&self.tokens[j], ",") {
                out.push((start, j));
                start = j + 1;
            }
            j += 1;
        }
        if start < close {
            out.push((start, close));
        }
        out
    }

    fn pref_call(&mut self, call: &str, from: usize, close: usize, to: usize, cond: Cond) {
        let line = self.tokens[from].line;
        let text = self.text(from, to);
        let args = self.arguments(from + 1, close);
        let mut unmodelled = None;
        let name = match args.first() {
            Some(&(a, b)) => self.expr(a, b, &mut unmodelled),
            None => Js::Undefined,
        };
        let value = match args.get(1) {
            Some(&(a, b)) => self.expr(a, b, &mut unmodelled),
            None => Js::Undefined,
        };
        if let Some(why) = unmodelled {
            self.any(from, to, why);
            return;
        }
        let target = match name {
            Js::Str(s) => CfgTarget::Pref(s),
            Js::Unknown(why) => CfgTarget::Any(format!("the pref name is computed: {why}")),
            other => CfgTarget::Any(format!("the pref name is {other:?}, not a string")),
        };
        let value = pref_value(value);
        let op = match (call, cond) {
            // Set only under a condition: its value, and whether it is locked, are unknown.
            (_, Some(cond_line)) => CfgOp::Lock(CfgValue::Unknown(format!(
                "{call}() runs only when the condition at line {cond_line} holds"
            ))),
            ("pref", None) => CfgOp::User(value),
            ("defaultPref", None) => CfgOp::Default(value),
            ("lockPref", None) => CfgOp::Lock(value),
            ("unlockPref", None) => CfgOp::Unlock,
            (_, None) => CfgOp::Clear,
        };
        self.effects.push(CfgEffect {
            line,
            target,
            op,
            text,
        });
    }

    /// `term (+ term)*`; anything else is unknown.
    fn expr(&mut self, from: usize, to: usize, unmodelled: &mut Option<String>) -> Js {
        if from >= to {
            return Js::Undefined;
        }
        let mut acc: Option<Js> = None;
        let mut i = from;
        while i < to {
            let (v, next) = self.term(i, to, unmodelled);
            acc = Some(match acc {
                None => v,
                Some(a) => add(a, v),
            });
            i = next;
            if i < to {
                if is_punct(&self.tokens[i], "+") {
                    i += 1;
                    continue;
                }
                // Another operator: the value is not computed; calls in the rest still count.
                let why = format!(
                    "\"{}\" is an expression the agent does not evaluate",
                    self.text(from, to)
                );
                if self.mentions_prefs(i, to) {
                    *unmodelled = Some(format!(
                        "\"{}\" is not evaluated and may change any pref",
                        self.text(from, to)
                    ));
                }
                return Js::Unknown(why);
            }
        }
        acc.unwrap_or(Js::Undefined)
    }

    /// One term at `i`: its value and where it ends.
    fn term(&mut self, i: usize, to: usize, unmodelled: &mut Option<String>) -> (Js, usize) {
        let t = self.tokens[i].clone();
        match &t.tok {
            Tok::Str(s) => (Js::Str(s.clone()), i + 1),
            Tok::Num(n) => (Js::Num(*n), i + 1),
            Tok::Punct("-") if i + 1 < to => match self.tokens[i + 1].tok {
                Tok::Num(n) => (Js::Num(-n), i + 2),
                _ => (
                    Js::Unknown("a negated expression is not evaluated".into()),
                    to,
                ),
            },
            Tok::Punct("(") => {
                let close = self.closing(i);
                (self.expr(i + 1, close, unmodelled), close + 1)
            }
            Tok::Ident(id) => {
                let call = i + 1 < to && is_punct(&self.tokens[i + 1], "(");
                if call {
                    let close = self.closing(i + 1);
                    let args = self.arguments(i + 1, close);
                    let mut vals = Vec::new();
                    for (a, b) in args {
                        vals.push(self.expr(a, b, unmodelled));
                    }
                    let v = match id.as_str() {
                        "getenv" => match vals.first() {
                            Some(Js::Str(var)) => match (self.env)(var) {
                                Some(v) => Js::Str(v),
                                None => Js::Unknown(format!(
                                    "getenv(\"{var}\") is not known to the agent"
                                )),
                            },
                            _ => Js::Unknown("getenv() of a computed name".into()),
                        },
                        "getPref" => Js::Unknown(format!(
                            "getPref() at line {} reads a value at run time",
                            t.line
                        )),
                        name if HARMLESS_CALLS.contains(&name) => Js::Undefined,
                        name => {
                            *unmodelled = Some(format!(
                                "{name}() at line {} is not evaluated and may change any pref",
                                t.line
                            ));
                            Js::Unknown(format!("{name}() is not evaluated"))
                        }
                    };
                    return (v, close + 1);
                }
                let v = match id.as_str() {
                    "true" => Js::Bool(true),
                    "false" => Js::Bool(false),
                    "undefined" | "null" => Js::Undefined,
                    name => self
                        .vars
                        .get(name)
                        .cloned()
                        .unwrap_or_else(|| Js::Unknown(format!("{name} is not known"))),
                };
                // Member access and the like: not evaluated.
                if i + 1 < to && matches!(self.tokens[i + 1].tok, Tok::Punct("." | "[" | "?.")) {
                    if self.mentions_prefs(i, to) {
                        *unmodelled = Some(format!(
                            "\"{}\" is not evaluated and may change any pref",
                            self.text(i, to)
                        ));
                    }
                    return (
                        Js::Unknown(format!("\"{}\" is not evaluated", self.text(i, to))),
                        to,
                    );
                }
                (v, i + 1)
            }
            _ => (
                Js::Unknown(format!("\"{}\" is not evaluated", self.text(i, to))),
                to,
            ),
        }
    }
}

/// Whether a line break between `prev` and `next` does not end the statement.
fn continues(prev: &Token, next: &Token) -> bool {
    let binary = |t: &Token| {
        matches!(
            t.tok,
            Tok::Punct(
                "+" | "-"
                    | "*"
                    | "/"
                    | "%"
                    | "."
                    | "?."
                    | ","
                    | "="
                    | "+="
                    | "=="
                    | "==="
                    | "!="
                    | "!=="
                    | "&&"
                    | "||"
                    | "??"
                    | "?"
                    | ":"
                    | "<"
                    | ">"
                    | "<="
                    | ">="
                    | "("
                    | "["
                    | "{"
            )
        )
    };
    binary(prev) || (binary(next) && !matches!(next.tok, Tok::Punct("{" | "(" | "[")))
}

/// JavaScript's `+` on the values we know.
fn add(a: Js, b: Js) -> Js {
    match (a, b) {
        (Js::Unknown(w), _) | (_, Js::Unknown(w)) => Js::Unknown(w),
        (Js::Num(x), Js::Num(y)) => Js::Num(x + y),
        (Js::Str(x), other) => match js_string(&other) {
            Some(y) => Js::Str(x + &y),
            None => Js::Unknown("a concatenation the agent does not evaluate".into()),
        },
        (other, Js::Str(y)) => match js_string(&other) {
            Some(x) => Js::Str(x + &y),
            None => Js::Unknown("a concatenation the agent does not evaluate".into()),
        },
        _ => Js::Unknown("an addition the agent does not evaluate".into()),
    }
}

fn js_string(v: &Js) -> Option<String> {
    match v {
        Js::Str(s) => Some(s.clone()),
        Js::Bool(b) => Some(b.to_string()),
        Js::Undefined => Some("undefined".into()),
        Js::Num(n) if n.fract() == 0.0 && n.abs() < 1e15 => Some(format!("{}", *n as i64)),
        _ => None,
    }
}

/// A JavaScript value as libpref stores it: bool, 32-bit int or string.
fn pref_value(v: Js) -> CfgValue {
    match v {
        Js::Bool(b) => CfgValue::Known(PrefValue::Bool(b)),
        Js::Str(s) => CfgValue::Known(PrefValue::Str(s)),
        Js::Num(n) if n.fract() == 0.0 && n >= f64::from(i32::MIN) && n <= f64::from(i32::MAX) => {
            CfgValue::Known(PrefValue::Int(n as i64))
        }
        Js::Num(n) => CfgValue::Unknown(format!("{n} is not a 32-bit integer")),
        Js::Undefined => CfgValue::Unknown("no value".into()),
        Js::Unknown(why) => CfgValue::Unknown(why),
    }
}

#[cfg(test)]
mod tests;
