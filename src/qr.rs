//! A QR code on the terminal, for the device login's `verification_uri_complete`: two
//! modules a character with Unicode half blocks, light modules drawn and dark ones left
//! blank, the way `qrencode -t UTF8` draws one, so that on the usual dark terminal
//! background the code reads dark on light, as phone cameras expect.

use qrcode::QrCode;
use qrcode::render::unicode::Dense1x2;

/// The code for `text`, with its quiet zone, as lines ending in `\n`; `None` when the
/// text is too long for a QR code.
pub fn render(text: &str) -> Option<String> {
    let code = QrCode::new(text.as_bytes()).ok()?;
    let mut s = code
        .render::<Dense1x2>()
        .dark_color(Dense1x2::Light)
        .light_color(Dense1x2::Dark)
        .quiet_zone(true)
        .build();
    s.push('\n');
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quiet_zone_is_drawn_and_the_modules_use_half_blocks() {
        let s = render("https://example.org/device?user_code=ABCD-EFGH").unwrap();
        let lines: Vec<&str> = s.lines().collect();
        // The quiet zone is light, so drawn: the first line is all full blocks.
        assert!(lines[0].chars().all(|c| c == '█'), "{}", lines[0]);
        assert!(
            s.chars().all(|c| matches!(c, '█' | '▀' | '▄' | ' ' | '\n')),
            "{s}"
        );
        let width = lines[0].chars().count();
        assert!(lines.iter().all(|l| l.chars().count() == width));
    }
}
