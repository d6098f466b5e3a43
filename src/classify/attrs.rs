//! A task's attributes: a few named strings (a path, an operation, a tenant) that classifiers
//! read. Copied into the task's slot at submission into buffers reused from task to task.

use std::fmt;

/// At most this many attributes per task.
pub const MAX_ATTRS: usize = 16;
/// An attribute's name is 1 to this many bytes.
pub const MAX_ATTR_NAME: usize = 64;
/// An attribute's value is at most this many bytes.
pub const MAX_ATTR_VALUE: usize = 4096;

/// Why a task's attributes were refused at submission.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttrError {
    /// More than [`MAX_ATTRS`] attributes (how many).
    TooMany(usize),
    /// The attribute at this index has an empty name.
    EmptyName(usize),
    /// The attribute at this index has a name longer than [`MAX_ATTR_NAME`] bytes.
    NameTooLong(usize),
    /// The attribute at this index has a value longer than [`MAX_ATTR_VALUE`] bytes.
    ValueTooLong(usize),
}

impl fmt::Display for AttrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::TooMany(n) => write!(f, "the task has {n} attributes, more than {MAX_ATTRS}"),
            Self::EmptyName(i) => write!(f, "attrs[{i}] has an empty name"),
            Self::NameTooLong(i) => write!(f, "attrs[{i}]'s name is longer than {MAX_ATTR_NAME} bytes"),
            Self::ValueTooLong(i) => write!(f, "attrs[{i}]'s value is longer than {MAX_ATTR_VALUE} bytes"),
        }
    }
}

impl std::error::Error for AttrError {}

/// Checks a task's attributes against the limits (what submission does).
pub fn check(attrs: &[(&str, &str)]) -> Result<(), AttrError> {
    if attrs.len() > MAX_ATTRS {
        return Err(AttrError::TooMany(attrs.len()));
    }
    for (i, (name, value)) in attrs.iter().enumerate() {
        if name.is_empty() {
            return Err(AttrError::EmptyName(i));
        }
        if name.len() > MAX_ATTR_NAME {
            return Err(AttrError::NameTooLong(i));
        }
        if value.len() > MAX_ATTR_VALUE {
            return Err(AttrError::ValueTooLong(i));
        }
    }
    Ok(())
}

/// Attributes owned: one text buffer and the ends of each name and value, reused from task to
/// task (clearing keeps the capacity).
#[derive(Clone, Debug, Default)]
pub struct AttrList {
    text: String,
    ends: Vec<(u32, u32)>,
}

impl AttrList {
    /// None.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one (a name seen again: the first one is what [`Attrs::get`] finds).
    pub fn push(&mut self, name: &str, value: &str) -> Result<(), AttrError> {
        let i = self.ends.len();
        check(&[(name, value)]).map_err(|e| match e {
            AttrError::EmptyName(_) => AttrError::EmptyName(i),
            AttrError::NameTooLong(_) => AttrError::NameTooLong(i),
            AttrError::ValueTooLong(_) => AttrError::ValueTooLong(i),
            other => other,
        })?;
        if i >= MAX_ATTRS {
            return Err(AttrError::TooMany(i + 1));
        }
        self.push_unchecked(name, value);
        Ok(())
    }

    pub(crate) fn push_unchecked(&mut self, name: &str, value: &str) {
        self.text.push_str(name);
        let n = self.text.len() as u32;
        self.text.push_str(value);
        self.ends.push((n, self.text.len() as u32));
    }

    /// Replaces the list with `attrs` (checked by the caller).
    pub(crate) fn set(&mut self, attrs: &[(&str, &str)]) {
        self.clear();
        for (n, v) in attrs {
            self.push_unchecked(n, v);
        }
    }

    /// Removes every attribute, keeping the buffers.
    pub fn clear(&mut self) {
        self.text.clear();
        self.ends.clear();
    }

    /// Whether it has none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// A borrowed view.
    pub fn view(&self) -> Attrs<'_> {
        Attrs { text: &self.text, ends: &self.ends }
    }
}

/// A task's attributes, borrowed.
#[derive(Clone, Copy, Debug, Default)]
pub struct Attrs<'a> {
    text: &'a str,
    ends: &'a [(u32, u32)],
}

impl<'a> Attrs<'a> {
    /// The value of the first attribute called `name`.
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// Each (name, value), in the order given.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        let text = self.text;
        let mut start = 0usize;
        self.ends.iter().map(move |&(n, v)| {
            let (n, v) = (n as usize, v as usize);
            let pair = (&text[start..n], &text[n..v]);
            start = v;
            pair
        })
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_keeps_names_and_values_apart_and_in_order() {
        let mut l = AttrList::new();
        l.push("path", "/api/users").unwrap();
        l.push("op", "").unwrap();
        l.push("tenant", "acme").unwrap();
        let v = l.view();
        assert_eq!(v.len(), 3);
        assert_eq!(v.get("path"), Some("/api/users"));
        assert_eq!(v.get("op"), Some(""));
        assert_eq!(v.get("tenant"), Some("acme"));
        assert_eq!(v.get("pat"), None);
        assert_eq!(v.iter().collect::<Vec<_>>(), [("path", "/api/users"), ("op", ""), ("tenant", "acme")]);
        l.clear();
        assert!(l.view().is_empty());
    }

    #[test]
    fn limits_name_the_attribute() {
        let mut l = AttrList::new();
        assert_eq!(l.push("", "x"), Err(AttrError::EmptyName(0)));
        l.push("a", "x").unwrap();
        assert_eq!(l.push(&"n".repeat(MAX_ATTR_NAME + 1), ""), Err(AttrError::NameTooLong(1)));
        assert_eq!(l.push("b", &"v".repeat(MAX_ATTR_VALUE + 1)), Err(AttrError::ValueTooLong(1)));
        for i in 1..MAX_ATTRS {
            l.push(&format!("k{i}"), "v").unwrap();
        }
        assert_eq!(l.push("one-more", "v"), Err(AttrError::TooMany(MAX_ATTRS + 1)));
        let many = vec![("a", "b"); MAX_ATTRS + 1];
        assert_eq!(check(&many), Err(AttrError::TooMany(MAX_ATTRS + 1)));
        assert!(AttrError::NameTooLong(3).to_string().contains("attrs[3]"));
    }
}
