//! The chunked transfer coding (RFC 9112 §7.1): a strict incremental decoder and the
//! encoder.
//!
//! The decoder is sans-I/O: it is fed whatever bytes have arrived and says how many it
//! consumed and which of them are payload. It refuses what lenient parsers disagree on
//! (the ground of chunked smuggling): a size that is not plain hexadecimal or longer
//! than 16 digits, a bare LF or CR where CRLF is due, control bytes in an extension,
//! data not followed by CRLF, obsolete line folding in trailers, and framing far
//! larger than the data it carries ([`MAX_EXCESS`]). Extensions and
//! trailer fields are dropped: what goes on is re-encoded from the payload alone.

/// Longest chunk-size line (size, extensions, CRLF).
pub const MAX_LINE: usize = 4096;

/// Framing bytes (size lines with their extensions, CRLFs) a body may carry beyond 16
/// per chunk and twice the chunk's data. Chunk extensions are otherwise unbounded next
/// to the data they come with: a body limit counts data only, so a client could send
/// gigabytes of extensions through a small limit (RFC 9112 §7.1.1 asks to bound them).
pub const MAX_EXCESS: u64 = 16 * 1024;

/// Decoding state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoder {
    state: State,
    /// Bytes of the current size or trailer line so far.
    line: usize,
    /// Bytes of trailer section so far.
    trailer_bytes: usize,
    /// Framing bytes not justified by data so far (see [`MAX_EXCESS`]).
    excess: u64,
    max_trailer_bytes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading hex digits of a size; `size` so far, `digits` read.
    Size { size: u64, digits: u8 },
    /// Whitespace after the size: only a `;` may follow.
    SizeWs { size: u64 },
    /// In extensions after the size, up to CR.
    Extension { size: u64 },
    /// Saw CR after a size line; LF due.
    SizeLf { size: u64 },
    /// Payload bytes left in this chunk.
    Data { left: u64 },
    /// CR due after data.
    DataCr,
    /// LF due after data.
    DataLf,
    /// At the start of a trailer line (or of the final empty line).
    TrailerStart,
    /// Inside a trailer field line.
    Trailer { name: bool },
    /// Saw CR ending a trailer field line.
    TrailerLf,
    /// Saw CR of the final empty line.
    FinalLf,
    /// The message is complete.
    Done,
}

/// A chunked body that cannot be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkError(pub &'static str);

/// What one [`Decoder::decode`] call found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Input bytes used.
    pub consumed: usize,
    /// Payload bytes: `input[data.0..data.0 + data.1]`, within the consumed bytes.
    pub data: (usize, usize),
    /// The body is complete (the last chunk and the trailer section were read).
    pub done: bool,
}

impl Decoder {
    /// A decoder whose trailer section may hold at most `max_trailer_bytes`.
    pub fn new(max_trailer_bytes: usize) -> Self {
        Self {
            state: State::Size { size: 0, digits: 0 },
            line: 0,
            trailer_bytes: 0,
            excess: 0,
            max_trailer_bytes,
        }
    }

    /// True once the whole body was read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Payload bytes of the current chunk not read yet (0 outside chunk data).
    pub fn data_left(&self) -> u64 {
        match self.state {
            State::Data { left } => left,
            _ => 0,
        }
    }

    /// Decodes from `input` up to the end of the first run of payload bytes (or to the
    /// end of the input, or of the body). Call again with the rest.
    pub fn decode(&mut self, input: &[u8]) -> Result<Step, ChunkError> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::Done => break,
                State::Data { left } => {
                    let n = (input.len() - i).min(usize::try_from(left).unwrap_or(usize::MAX));
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        State::DataCr
                    } else {
                        State::Data { left }
                    };
                    return Ok(Step {
                        consumed: i + n,
                        data: (i, n),
                        done: false,
                    });
                }
                State::Size { size, digits } => {
                    self.bump_line()?;
                    if let Some(d) = char::from(b).to_digit(16) {
                        if digits >= 16 {
                            return Err(ChunkError("chunk size too large"));
                        }
                        self.state = State::Size {
                            size: (size << 4) | u64::from(d),
                            digits: digits + 1,
                        };
                    } else if digits == 0 {
                        return Err(ChunkError("chunk size is not hexadecimal"));
                    } else if b == b'\r' {
                        self.state = State::SizeLf { size };
                    } else if b == b';' {
                        self.state = State::Extension { size };
                    } else if b == b' ' || b == b'\t' {
                        self.state = State::SizeWs { size };
                    } else {
                        return Err(ChunkError("invalid byte after chunk size"));
                    }
                }
                State::SizeWs { size } => {
                    self.bump_line()?;
                    if b == b';' {
                        self.state = State::Extension { size };
                    } else if b != b' ' && b != b'\t' {
                        return Err(ChunkError("invalid byte after chunk size"));
                    }
                }
                State::Extension { size } => {
                    self.bump_line()?;
                    if b == b'\r' {
                        self.state = State::SizeLf { size };
                    } else if !(b == b'\t' || (0x20..0x7f).contains(&b) || b >= 0x80) {
                        return Err(ChunkError("invalid byte in chunk extension"));
                    }
                }
                State::SizeLf { size } => {
                    if b != b'\n' {
                        return Err(ChunkError("chunk size line not ended by CRLF"));
                    }
                    // The line (CR counted), its LF, and the CRLF after the data.
                    self.excess = (self.excess + self.line as u64 + 3)
                        .saturating_sub(size.saturating_mul(2).saturating_add(16));
                    if self.excess > MAX_EXCESS {
                        return Err(ChunkError("chunk extensions too large for their data"));
                    }
                    self.line = 0;
                    self.state = if size == 0 {
                        State::TrailerStart
                    } else {
                        State::Data { left: size }
                    };
                }
                State::DataCr => {
                    if b != b'\r' {
                        return Err(ChunkError("chunk data not followed by CRLF"));
                    }
                    self.state = State::DataLf;
                }
                State::DataLf => {
                    if b != b'\n' {
                        return Err(ChunkError("chunk data not followed by CRLF"));
                    }
                    self.state = State::Size { size: 0, digits: 0 };
                }
                State::TrailerStart => {
                    self.bump_trailer()?;
                    if b == b'\r' {
                        self.state = State::FinalLf;
                    } else if b == b' ' || b == b'\t' {
                        return Err(ChunkError("obsolete line folding in trailer"));
                    } else if is_tchar(b) {
                        self.state = State::Trailer { name: true };
                    } else {
                        return Err(ChunkError("invalid trailer field"));
                    }
                }
                State::Trailer { name } => {
                    self.bump_trailer()?;
                    if name {
                        if b == b':' {
                            self.state = State::Trailer { name: false };
                        } else if !is_tchar(b) {
                            return Err(ChunkError("invalid trailer field name"));
                        }
                    } else if b == b'\r' {
                        self.state = State::TrailerLf;
                    } else if !(b == b'\t' || (0x20..0x7f).contains(&b) || b >= 0x80) {
                        return Err(ChunkError("invalid trailer field value"));
                    }
                }
                State::TrailerLf => {
                    self.bump_trailer()?;
                    if b != b'\n' {
                        return Err(ChunkError("trailer line not ended by CRLF"));
                    }
                    self.state = State::TrailerStart;
                }
                State::FinalLf => {
                    if b != b'\n' {
                        return Err(ChunkError("chunked body not ended by CRLF"));
                    }
                    self.state = State::Done;
                    return Ok(Step {
                        consumed: i + 1,
                        data: (i + 1, 0),
                        done: true,
                    });
                }
            }
            i += 1;
        }
        Ok(Step {
            consumed: i,
            data: (i, 0),
            done: self.state == State::Done,
        })
    }

    fn bump_line(&mut self) -> Result<(), ChunkError> {
        self.line += 1;
        if self.line > MAX_LINE {
            return Err(ChunkError("chunk size line too long"));
        }
        Ok(())
    }

    fn bump_trailer(&mut self) -> Result<(), ChunkError> {
        self.trailer_bytes += 1;
        if self.trailer_bytes > self.max_trailer_bytes {
            return Err(ChunkError("trailer section too large"));
        }
        Ok(())
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// Appends a chunk header for `len` payload bytes (`len` > 0).
pub fn encode_header(out: &mut Vec<u8>, len: usize) {
    let mut digits = [0u8; 16];
    let mut n = len;
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b"0123456789abcdef"[n & 15];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
    out.extend_from_slice(b"\r\n");
}

/// The CRLF after a chunk's payload.
pub const CHUNK_END: &[u8] = b"\r\n";

/// The last chunk and an empty trailer section.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` fed in pieces of `piece` bytes; the payload, or the error.
    fn decode_all(input: &[u8], piece: usize) -> Result<(Vec<u8>, usize), ChunkError> {
        let mut d = Decoder::new(1024);
        let mut out = Vec::new();
        let mut pos = 0;
        let mut avail = 0;
        while !d.is_done() {
            if pos == avail {
                if avail == input.len() {
                    return Err(ChunkError("incomplete"));
                }
                avail = (avail + piece).min(input.len());
            }
            let s = d.decode(&input[pos..avail])?;
            out.extend_from_slice(&input[pos + s.data.0..pos + s.data.0 + s.data.1]);
            pos += s.consumed;
        }
        Ok((out, pos))
    }

    #[test]
    fn decodes_in_any_pieces() {
        let body = b"5\r\nhello\r\n6;ext=1;x=\"y\"\r\n world\r\nA ;x\r\n0123456789\r\n0\r\nx-t: 1\r\n\r\nNEXT";
        for piece in 1..body.len() {
            let (out, used) = decode_all(body, piece).unwrap();
            assert_eq!(out, b"hello world0123456789");
            assert_eq!(used, body.len() - 4);
        }
    }

    #[test]
    fn refuses_ambiguous_encodings() {
        let bad: [&[u8]; 15] = [
            b"5 \r\nhello\r\n0\r\n\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"5\r\nhelloX\r\n0\r\n\r\n",
            b"0x5\r\nhello\r\n0\r\n\r\n",
            b"-5\r\nhello\r\n0\r\n\r\n",
            b"\r\n",
            b"5 5\r\nhello\r\n0\r\n\r\n",
            b"11111111111111111\r\n",
            b"5;\x01\r\nhello\r\n0\r\n\r\n",
            b"0\r\nx-t: 1\r\n  folded\r\n\r\n",
            b"0\r\nx t: 1\r\n\r\n",
            b"0\r\nx-t: 1\n\r\n",
            b"0\r\n\n",
            b"5\rhello\r\n0\r\n\r\n",
        ];
        for b in bad {
            assert!(
                decode_all(b, 3).is_err(),
                "{:?}",
                String::from_utf8_lossy(b)
            );
        }
        // Whitespace before an extension is allowed (BWS).
        assert!(decode_all(b"5 ;a\r\nhello\r\n0\r\n\r\n", 2).is_ok());
    }

    #[test]
    fn bounded_lines_and_trailers() {
        let mut long = b"1;".to_vec();
        long.extend(std::iter::repeat_n(b'a', MAX_LINE));
        long.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
        assert!(decode_all(&long, 100).is_err());
        let mut trailers = b"0\r\n".to_vec();
        for _ in 0..200 {
            trailers.extend_from_slice(b"x-t: 1\r\n");
        }
        trailers.extend_from_slice(b"\r\n");
        assert_eq!(
            decode_all(&trailers, 50),
            Err(ChunkError("trailer section too large"))
        );
    }

    #[test]
    fn extensions_are_bounded_by_the_data_they_come_with() {
        // Large extensions on large chunks (signed uploads) pass, whatever the total.
        let mut signed = Vec::new();
        for _ in 0..200 {
            signed.extend_from_slice(b"400;chunk-signature=");
            signed.extend(std::iter::repeat_n(b'f', 64));
            signed.extend_from_slice(b"\r\n");
            signed.extend(std::iter::repeat_n(b'd', 0x400));
            signed.extend_from_slice(b"\r\n");
        }
        signed.extend_from_slice(b"0\r\n\r\n");
        let (out, _) = decode_all(&signed, 1000).unwrap();
        assert_eq!(out.len(), 200 * 0x400);
        // Tiny chunks without extensions pass.
        let mut tiny = b"1\r\nx\r\n".repeat(10_000);
        tiny.extend_from_slice(b"0\r\n\r\n");
        assert_eq!(decode_all(&tiny, 100).unwrap().0.len(), 10_000);
        // Kilobytes of extensions per byte of data do not.
        let mut flood = Vec::new();
        for _ in 0..8 {
            flood.extend_from_slice(b"1;");
            flood.extend(std::iter::repeat_n(b'e', 4000));
            flood.extend_from_slice(b"\r\nx\r\n");
        }
        flood.extend_from_slice(b"0\r\n\r\n");
        assert_eq!(
            decode_all(&flood, 500),
            Err(ChunkError("chunk extensions too large for their data"))
        );
    }

    #[test]
    fn encoder_round_trips() {
        for len in [1usize, 9, 15, 16, 255, 4096, 65535, 1 << 20] {
            let mut out = Vec::new();
            encode_header(&mut out, len);
            assert_eq!(out, format!("{len:x}\r\n").into_bytes());
        }
    }

    proptest::proptest! {
        #[test]
        fn round_trip(chunks in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 1..300), 0..8), piece in 1usize..64) {
            let mut enc = Vec::new();
            let mut want = Vec::new();
            for c in &chunks {
                encode_header(&mut enc, c.len());
                enc.extend_from_slice(c);
                enc.extend_from_slice(CHUNK_END);
                want.extend_from_slice(c);
            }
            enc.extend_from_slice(LAST_CHUNK);
            let (out, used) = decode_all(&enc, piece).unwrap();
            proptest::prop_assert_eq!(out, want);
            proptest::prop_assert_eq!(used, enc.len());
        }

        #[test]
        fn arbitrary_input_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let mut d = Decoder::new(256);
            let mut pos = 0;
            while pos < bytes.len() {
                match d.decode(&bytes[pos..]) {
                    Ok(s) => {
                        proptest::prop_assert!(s.data.0 + s.data.1 <= s.consumed.max(s.data.0));
                        if s.consumed == 0 { break; }
                        pos += s.consumed;
                    }
                    Err(_) => break,
                }
            }
        }
    }
}
