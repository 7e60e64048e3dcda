//! Questions on a terminal, each with the flag that answers it instead. Without a
//! terminal nothing is asked: a question with a default takes it, one without is an
//! error naming its flag (exit 64), so scripts never hang on a prompt.

use crate::error::{Error, Result};
use crate::secret::Secret;
use std::io::{BufRead, IsTerminal, Write};

pub struct Asker {
    tty: bool,
}

impl Asker {
    pub fn new() -> Asker {
        Asker {
            tty: std::io::stdin().is_terminal() && std::io::stderr().is_terminal(),
        }
    }

    pub fn interactive(&self) -> bool {
        self.tty
    }

    fn missing(what: &str, flag: &str) -> Error {
        Error::usage(format!(
            "mailtoken add needs {what}, and there is no terminal to ask on"
        ))
        .with_remedy(format!("Give it with {flag}."))
    }

    /// A line of text; Enter takes `default`. `check` refuses an answer with its reason,
    /// and the question is asked again.
    pub fn text(
        &self,
        question: &str,
        default: Option<&str>,
        flag: &str,
        check: &dyn Fn(&str) -> std::result::Result<(), String>,
    ) -> Result<String> {
        if !self.tty {
            return match default {
                Some(d) => Ok(d.to_owned()),
                None => Err(Self::missing(question, flag)),
            };
        }
        loop {
            match default {
                Some(d) => eprint!("{question} [{d}]: "),
                None => eprint!("{question}: "),
            }
            let _ = std::io::stderr().flush();
            let mut line = String::new();
            let n = std::io::stdin()
                .lock()
                .read_line(&mut line)
                .map_err(|e| Error::io(format!("reading the answer: {e}")))?;
            if n == 0 {
                eprintln!();
                return Err(Error::usage("no answer (end of input)")
                    .with_remedy(format!("Give it with {flag}.")));
            }
            let answer = line.trim();
            let answer = match (answer.is_empty(), default) {
                (true, Some(d)) => d.to_owned(),
                (true, None) => {
                    eprintln!("  (an answer is needed; or stop with Ctrl-C and give {flag})");
                    continue;
                }
                (false, _) => answer.to_owned(),
            };
            match check(&answer) {
                Ok(()) => return Ok(answer),
                Err(why) => eprintln!("  {why}"),
            }
        }
    }

    /// One of `choices`; Enter takes the first.
    pub fn choose(&self, question: &str, choices: &[&str], flag: &str) -> Result<String> {
        let list = choices.join(", ");
        self.text(
            &format!("{question} ({list})"),
            choices.first().copied(),
            flag,
            &|a| {
                if choices.contains(&a) {
                    Ok(())
                } else {
                    Err(format!("one of: {list}"))
                }
            },
        )
    }

    /// Yes or no; Enter takes `default`.
    pub fn yes(&self, question: &str, default: bool, flag: &str) -> Result<bool> {
        let d = if default { "Y/n" } else { "y/N" };
        if !self.tty {
            return Ok(default);
        }
        let a = self.text(
            &format!("{question} [{d}]"),
            Some(if default { "y" } else { "n" }),
            flag,
            &|a| match a.to_ascii_lowercase().as_str() {
                "y" | "yes" | "n" | "no" => Ok(()),
                _ => Err("y or n".into()),
            },
        )?;
        Ok(a.to_ascii_lowercase().starts_with('y'))
    }

    /// A secret, read without echo. `optional`: Enter gives `None`.
    pub fn secret(&self, question: &str, flag: &str, optional: bool) -> Result<Option<Secret>> {
        if !self.tty {
            return if optional {
                Ok(None)
            } else {
                Err(Self::missing(question, flag))
            };
        }
        let hint = if optional { " (Enter for none)" } else { "" };
        match crate::password::input::read_password(&format!("{question}{hint} (not shown): ")) {
            Ok(s) => Ok(Some(s)),
            // An empty line.
            Err(_) if optional => Ok(None),
            Err(e) => Err(e),
        }
    }
}
