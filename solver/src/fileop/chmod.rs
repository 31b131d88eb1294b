//! `--chmod`: an octal mode (`0755`, up to `07777`) or a symbolic one (`u+x,go-w`), which
//! BuildKit accepts both of. Symbolic modes follow chmod(1) (BSD `setmode`, as BuildKit's
//! mode package does) with a umask of 0: clauses `[ugoa]*` then one or more
//! `[-+=]` operations with `rwxXst` or a copy of `u`, `g` or `o`.

/// The file-type bits are never touched.
const PERM_MASK: u32 = 0o7777;

/// A parsed `--chmod` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModeSpec {
    /// Replaces permission and special bits.
    Octal(u32),
    /// Edits the source's mode.
    Symbolic(Vec<Clause>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clause {
    /// Mask of the classes named (`u` 0o4700, `g` 0o2070, `o` 0o0007); 0 when none were.
    who: u32,
    ops: Vec<(char, Perm)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Perm {
    /// `rwxXst` letters.
    Bits(String),
    /// Copy of another class: `u`, `g` or `o`.
    Copy(char),
}

/// Why a `--chmod` value is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid chmod parameter: '{0}'")]
pub struct ChmodError(String);

impl ModeSpec {
    /// Parses an octal or symbolic mode.
    pub fn parse(v: &str) -> Result<Self, ChmodError> {
        let err = || ChmodError(v.to_owned());
        if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
            return match u32::from_str_radix(v, 8) {
                Ok(m) if m <= PERM_MASK => Ok(ModeSpec::Octal(m)),
                _ => Err(err()),
            };
        }
        if v.is_empty() {
            return Err(err());
        }
        let mut clauses = Vec::new();
        for text in v.split(',') {
            let mut chars = text.chars().peekable();
            let mut who = 0;
            while let Some(&c) = chars.peek() {
                who |= match c {
                    'u' => 0o4700,
                    'g' => 0o2070,
                    'o' => 0o0007,
                    'a' => 0o6777,
                    _ => break,
                };
                chars.next();
            }
            let mut ops = Vec::new();
            while let Some(op) = chars.next() {
                if !matches!(op, '+' | '-' | '=') {
                    return Err(err());
                }
                let perm = match chars.peek() {
                    Some(&c @ ('u' | 'g' | 'o')) => {
                        chars.next();
                        Perm::Copy(c)
                    }
                    _ => {
                        let mut bits = String::new();
                        while let Some(&c) = chars.peek() {
                            if !"rwxXst".contains(c) {
                                break;
                            }
                            bits.push(c);
                            chars.next();
                        }
                        Perm::Bits(bits)
                    }
                };
                ops.push((op, perm));
            }
            if ops.is_empty() {
                return Err(err());
            }
            clauses.push(Clause { who, ops });
        }
        Ok(ModeSpec::Symbolic(clauses))
    }

    /// The permission and special bits for an entry whose source mode is `mode` (full
    /// `st_mode`; only its low 12 bits and whether it is a directory matter).
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        match self {
            ModeSpec::Octal(m) => *m,
            ModeSpec::Symbolic(clauses) => {
                let mut cur = mode & PERM_MASK;
                for clause in clauses {
                    cur = clause.apply(cur, is_dir);
                }
                cur
            }
        }
    }

    /// The mode of directories a copy creates on the way to its destination: the octal
    /// mode when one is given (BuildKit applies it to created parents), else 0755.
    pub fn parent_dir_mode(spec: Option<&ModeSpec>) -> u32 {
        match spec {
            Some(ModeSpec::Octal(m)) => *m,
            _ => 0o755,
        }
    }
}

impl Clause {
    fn apply(&self, mut cur: u32, is_dir: bool) -> u32 {
        // No class named: all of them (the umask is 0), set-id bits included.
        let who_given = self.who != 0;
        let who = if who_given { self.who } else { 0o6777 };
        for (op, perm) in &self.ops {
            let bits = match perm {
                Perm::Copy(c) => {
                    // The rwx bits of one class, spread to every class, then masked.
                    let shift = match c {
                        'u' => 6,
                        'g' => 3,
                        _ => 0,
                    };
                    let rwx = (cur >> shift) & 0o7;
                    (rwx << 6 | rwx << 3 | rwx) & who & 0o777
                }
                Perm::Bits(letters) => {
                    let mut b = 0;
                    for l in letters.chars() {
                        b |= match l {
                            'r' => 0o444,
                            'w' => 0o222,
                            'x' => 0o111,
                            // Search/execute only for directories and already executable files.
                            'X' if is_dir || cur & 0o111 != 0 => 0o111,
                            'X' => 0,
                            's' => 0o6000,
                            // Sticky unless only "other" was named (BSD setmode).
                            't' if !who_given || self.who & !0o0007 != 0 => 0o1000,
                            _ => 0,
                        };
                    }
                    let sticky = b & 0o1000;
                    (b & who) | sticky
                }
            };
            match op {
                '+' => cur |= bits,
                '-' => cur &= !bits,
                _ => {
                    // `=`: clear the named classes' rwx and set-id bits, then set.
                    cur &= !(who & 0o6777);
                    cur |= bits;
                }
            }
        }
        cur & PERM_MASK
    }
}
