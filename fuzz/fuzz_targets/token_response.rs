//! Token endpoint answers (`oauth::read_token_response`): any status, content type and
//! body; never a panic, a grant only from a 200 with an access token, an OAuth error
//! only from 400/401, and a refusal that does not depend on the body's string values
//! (they may be tokens): the same body with every string value replaced gives the very
//! same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailtoken::oauth::read_token_response;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let status = [200u16, 400, 401, 403, 500, 503, 302][data[0] as usize % 7];
    let ct = ["application/json", "text/html", "text/plain", ""][data[1] as usize % 4];
    let body = &data[2..];
    match read_token_response(status, ct, body) {
        Ok(Some(_)) => assert_eq!(status, 200),
        Ok(None) => assert!(status == 400 || status == 401),
        Err(m) => {
            if let Ok(mut v @ Value::Object(_)) = serde_json::from_slice::<Value>(body) {
                // Both sides as serde_json writes them (a repeated key is kept once).
                let m = read_token_response(status, ct, &serde_json::to_vec(&v).unwrap())
                    .err()
                    .unwrap_or_default();
                blank(&mut v);
                let other = serde_json::to_vec(&v).unwrap();
                let m2 = read_token_response(status, ct, &other).err().unwrap_or_default();
                // Positions ("at line 1 column 40") move with the values' lengths.
                assert_eq!(
                    unplaced(&m),
                    unplaced(&m2),
                    "the message depends on a string value of the body"
                );
            }
        }
    }
});

fn blank(v: &mut Value) {
    match v {
        Value::String(s) => *s = "x".into(),
        Value::Array(a) => a.iter_mut().for_each(blank),
        Value::Object(o) => o.values_mut().for_each(blank),
        _ => {}
    }
}

fn unplaced(m: &str) -> String {
    match m.find(" at line ") {
        Some(i) => {
            let rest = &m[i + 9..];
            let end = rest
                .find(|c: char| !(c.is_ascii_digit() || c == ' ' || "column".contains(c)))
                .unwrap_or(rest.len());
            format!("{}{}", &m[..i], &rest[end..])
        }
        None => m.to_owned(),
    }
}
