// .npy / .npz reader. See npz.hpp for the contract; docs/FORMAT.md for how models use it.
#include "format/npz.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <set>

#include "pydeconv/error.hpp"
#include "pydeconv/limits.hpp"

#ifdef PYDECONV_HAVE_ZLIB
#include <zlib.h>
#endif

namespace pydeconv {
namespace {

[[noreturn]] void bad(const std::string& where, const std::string& what) {
  fail(ErrorKind::Format, where + ": " + what);
}

// Little-endian reads; callers have already checked that the bytes exist.
uint64_t le(const unsigned char* p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// True when [off, off + len) lies inside a buffer of `size` bytes (no overflow possible).
bool fits(uint64_t off, uint64_t len, uint64_t size) { return off <= size && len <= size - off; }

// ---------------------------------------------------------------------------------------------
// .npy

struct DtypeInfo {
  const char* descr;
  int itemsize;
};

// The plain numeric types a model file may hold. '|' is NumPy's "no byte order" mark (1 byte).
const DtypeInfo kDtypes[] = {
    {"<f2", 2}, {"<f4", 4}, {"<f8", 8}, {"|i1", 1}, {"<i2", 2}, {"<i4", 4},
    {"<i8", 8}, {"|u1", 1}, {"<u2", 2}, {"<u4", 4}, {"<u8", 8}, {"|b1", 1},
};

int dtype_itemsize(const std::string& descr) {
  for (const auto& d : kDtypes)
    if (descr == d.descr) return d.itemsize;
  return 0;
}

// A parser for the one Python literal NumPy writes: {'descr': '<f4', 'fortran_order': False,
// 'shape': (2, 3), }. Anything else (lists for structured dtypes, expressions) is rejected.
class HeaderParser {
 public:
  HeaderParser(const std::string& text, const std::string& where) : s_(text), where_(where) {}

  void parse(std::string& descr, bool& fortran, std::vector<int64_t>& shape) {
    bool have_descr = false, have_fortran = false, have_shape = false;
    expect('{');
    skip_ws();
    while (peek() != '}') {
      std::string key = string_lit();
      expect(':');
      skip_ws();
      if (key == "descr") {
        if (peek() != '\'' && peek() != '"')
          bad(where_, "structured dtypes are not supported (descr is not a string)");
        descr = string_lit();
        have_descr = true;
      } else if (key == "fortran_order") {
        fortran = bool_lit();
        have_fortran = true;
      } else if (key == "shape") {
        shape = tuple_lit();
        have_shape = true;
      } else {
        bad(where_, "unexpected key '" + key + "' in .npy header");
      }
      skip_ws();
      if (peek() == ',') {
        ++pos_;
        skip_ws();
      } else if (peek() != '}') {
        bad(where_, "malformed .npy header (expected ',' or '}')");
      }
    }
    ++pos_;
    skip_ws();
    if (pos_ != s_.size()) bad(where_, "trailing characters after the .npy header dictionary");
    if (!have_descr || !have_fortran || !have_shape)
      bad(where_, ".npy header lacks one of 'descr', 'fortran_order', 'shape'");
  }

 private:
  char peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }
  void skip_ws() {
    while (pos_ < s_.size() &&
           (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r'))
      ++pos_;
  }
  void expect(char c) {
    skip_ws();
    if (peek() != c) bad(where_, std::string("malformed .npy header (expected '") + c + "')");
    ++pos_;
  }
  std::string string_lit() {
    skip_ws();
    char q = peek();
    if (q != '\'' && q != '"') bad(where_, "malformed .npy header (expected a quoted string)");
    size_t end = s_.find(q, pos_ + 1);
    if (end == std::string::npos) bad(where_, "malformed .npy header (unterminated string)");
    std::string out = s_.substr(pos_ + 1, end - pos_ - 1);
    pos_ = end + 1;
    return out;
  }
  bool bool_lit() {
    if (s_.compare(pos_, 4, "True") == 0) {
      pos_ += 4;
      return true;
    }
    if (s_.compare(pos_, 5, "False") == 0) {
      pos_ += 5;
      return false;
    }
    bad(where_, "malformed .npy header (fortran_order is not True/False)");
  }
  std::vector<int64_t> tuple_lit() {
    std::vector<int64_t> dims;
    expect('(');
    skip_ws();
    while (peek() != ')') {
      if (peek() < '0' || peek() > '9')
        bad(where_, "malformed .npy header (shape is not a tuple of integers)");
      int64_t v = 0;
      while (peek() >= '0' && peek() <= '9') {
        int digit = peek() - '0';
        if (v > (std::numeric_limits<int64_t>::max() - digit) / 10)
          bad(where_, "shape dimension too large");
        v = v * 10 + digit;
        ++pos_;
      }
      if (peek() == 'L') ++pos_;  // Python 2 era files wrote longs as 3L
      dims.push_back(v);
      skip_ws();
      if (peek() == ',') {
        ++pos_;
        skip_ws();
      } else if (peek() != ')') {
        bad(where_, "malformed .npy header (bad shape tuple)");
      }
    }
    ++pos_;
    return dims;
  }

  const std::string& s_;
  const std::string& where_;
  size_t pos_ = 0;
};

// ---------------------------------------------------------------------------------------------
// CRC-32 (IEEE, as zip uses). zlib's is faster; the table version keeps zlib optional.

uint32_t crc32_of(const unsigned char* p, uint64_t n) {
#ifdef PYDECONV_HAVE_ZLIB
  uLong crc = crc32(0L, Z_NULL, 0);
  while (n > 0) {
    uInt chunk = static_cast<uInt>(std::min<uint64_t>(n, 1u << 30));
    crc = crc32(crc, p, chunk);
    p += chunk;
    n -= chunk;
  }
  return static_cast<uint32_t>(crc);
#else
  static const auto table = [] {
    std::vector<uint32_t> t(256);
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  uint32_t c = 0xFFFFFFFFu;
  for (uint64_t i = 0; i < n; ++i) c = table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
#endif
}

// Raw deflate (no zlib header) into exactly `out.size()` bytes.
void inflate_raw(const unsigned char* in, uint64_t in_size, std::vector<unsigned char>& out,
                 const std::string& where) {
#ifdef PYDECONV_HAVE_ZLIB
  z_stream zs;
  std::memset(&zs, 0, sizeof(zs));
  if (inflateInit2(&zs, -MAX_WBITS) != Z_OK) bad(where, "cannot initialise zlib");
  // zlib counts in 32-bit uInt: feed input and output in chunks so huge members work too.
  const uint64_t kChunk = 1u << 30;
  uint64_t in_left = in_size, out_left = out.size();
  zs.next_in = const_cast<unsigned char*>(in);
  zs.next_out = out.data();
  int rc = Z_OK;
  while (rc == Z_OK) {
    if (zs.avail_in == 0 && in_left > 0) {
      zs.avail_in = static_cast<uInt>(std::min(in_left, kChunk));
      in_left -= zs.avail_in;
    }
    if (zs.avail_out == 0 && out_left > 0) {
      zs.avail_out = static_cast<uInt>(std::min(out_left, kChunk));
      out_left -= zs.avail_out;
    }
    // Z_OK means progress was made; Z_BUF_ERROR that none is possible (input exhausted or output
    // full before the end of the stream), so the loop always terminates.
    rc = inflate(&zs, Z_NO_FLUSH);
  }
  bool ended = rc == Z_STREAM_END;
  bool full = zs.avail_out == 0 && out_left == 0;
  inflateEnd(&zs);
  if (!ended) {
    if (rc == Z_DATA_ERROR) bad(where, "corrupt deflate data");
    if (full) bad(where, "deflate data is larger than the declared size");
    bad(where, "deflate data is truncated");
  }
  if (!full) bad(where, "deflate data is smaller than the declared size");
#else
  (void)in;
  (void)in_size;
  (void)out;
  bad(where,
      "member is deflated (np.savez_compressed) but pydeconv was built without zlib; "
      "re-save the model with np.savez");
#endif
}

// ---------------------------------------------------------------------------------------------
// zip

struct Entry {
  std::string name;
  uint16_t method = 0;
  uint32_t crc = 0;
  uint64_t csize = 0, usize = 0, local_offset = 0;
  uint64_t data_offset = 0;  // filled from the local header
};

struct CentralDir {
  uint64_t count = 0, offset = 0, size = 0;
  uint64_t end = 0;  // where the central directory must end (start of the EOCD records)
};

CentralDir find_central_dir(const unsigned char* d, uint64_t size, const std::string& label) {
  if (size < 22) bad(label, "not a zip archive (too short)");
  // The EOCD record is the last 22 bytes plus a comment of at most 65535 bytes; accept only a
  // signature whose comment length reaches exactly the end of the file.
  uint64_t lowest = size >= 22 + 65535 ? size - 22 - 65535 : 0;
  uint64_t eocd = size;
  for (uint64_t p = size - 22 + 1; p-- > lowest;) {
    if (le(d + p, 4) == 0x06054b50 && p + 22 + le(d + p + 20, 2) == size) {
      eocd = p;
      break;
    }
  }
  if (eocd == size) bad(label, "not a zip archive (no end-of-central-directory record)");
  const unsigned char* e = d + eocd;
  if (le(e + 4, 2) != 0 || le(e + 6, 2) != 0)
    bad(label, "multi-disk zip archives are not supported");
  CentralDir cd;
  cd.count = le(e + 10, 2);
  cd.size = le(e + 12, 4);
  cd.offset = le(e + 16, 4);
  cd.end = eocd;
  if (le(e + 8, 2) != cd.count) bad(label, "multi-disk zip archives are not supported");
  // ZIP64: a locator sits just before the EOCD and points at the ZIP64 EOCD record.
  if (eocd >= 20 && le(d + eocd - 20, 4) == 0x07064b50) {
    const unsigned char* loc = d + eocd - 20;
    uint64_t rec = le(loc + 8, 8);
    if (le(loc + 4, 4) != 0 || le(loc + 16, 4) > 1)
      bad(label, "multi-disk zip archives are not supported");
    if (!fits(rec, 56, eocd - 20) || le(d + rec, 4) != 0x06064b50)
      bad(label, "corrupt ZIP64 end-of-central-directory record");
    const unsigned char* r = d + rec;
    if (le(r + 16, 4) != 0 || le(r + 20, 4) != 0 || le(r + 24, 8) != le(r + 32, 8))
      bad(label, "multi-disk zip archives are not supported");
    cd.count = le(r + 32, 8);
    cd.size = le(r + 40, 8);
    cd.offset = le(r + 48, 8);
    cd.end = rec;
  }
  if (!fits(cd.offset, cd.size, cd.end)) bad(label, "central directory lies outside the archive");
  // Each entry takes at least 46 bytes: a huge count cannot make us loop or allocate for long.
  if (cd.count > cd.size / 46) bad(label, "central directory is too small for its entry count");
  return cd;
}

// Replaces 0xFFFFFFFF sizes/offset by their values from the ZIP64 extra field (id 0x0001), which
// holds, in this order, only the fields that overflowed.
void apply_zip64_extra(Entry& en, const unsigned char* extra, uint64_t len, bool need_u,
                       bool need_c, bool need_off, const std::string& where) {
  uint64_t p = 0;
  bool found = false;
  while (p + 4 <= len) {
    uint64_t id = le(extra + p, 2), n = le(extra + p + 2, 2);
    if (!fits(p + 4, n, len)) bad(where, "corrupt extra field");
    if (id == 0x0001) {
      found = true;
      const unsigned char* f = extra + p + 4;
      uint64_t need = 8 * (uint64_t(need_u) + need_c + need_off);
      if (n < need) bad(where, "ZIP64 extra field is too short");
      if (need_u) {
        en.usize = le(f, 8);
        f += 8;
      }
      if (need_c) {
        en.csize = le(f, 8);
        f += 8;
      }
      if (need_off) en.local_offset = le(f, 8);
    }
    p += 4 + n;
  }
  if ((need_u || need_c || need_off) && !found)
    bad(where, "ZIP64 sizes without a ZIP64 extra field");
}

std::vector<Entry> read_entries(const unsigned char* d, const CentralDir& cd,
                                const std::string& label) {
  std::vector<Entry> entries;
  std::set<std::string> names;
  uint64_t p = cd.offset, end = cd.offset + cd.size;
  for (uint64_t i = 0; i < cd.count; ++i) {
    if (!fits(p, 46, end) || le(d + p, 4) != 0x02014b50)
      bad(label, "corrupt central directory entry");
    const unsigned char* h = d + p;
    uint64_t name_len = le(h + 28, 2), extra_len = le(h + 30, 2), comment_len = le(h + 32, 2);
    if (!fits(p + 46, name_len + extra_len + comment_len, end))
      bad(label, "corrupt central directory entry");
    Entry en;
    en.name.assign(reinterpret_cast<const char*>(h + 46), name_len);
    const std::string where = label + ": member '" + en.name + "'";
    uint64_t flags = le(h + 8, 2);
    en.method = static_cast<uint16_t>(le(h + 10, 2));
    en.crc = static_cast<uint32_t>(le(h + 16, 4));
    en.csize = le(h + 20, 4);
    en.usize = le(h + 24, 4);
    en.local_offset = le(h + 42, 4);
    if (flags & 0x41) bad(where, "encrypted members are not supported");
    if (en.method != 0 && en.method != 8)
      bad(where, "unsupported compression method " + std::to_string(en.method));
    if (le(h + 34, 2) != 0 && le(h + 34, 2) != 0xFFFF)
      bad(where, "multi-disk zip archives are not supported");
    apply_zip64_extra(en, h + 46 + name_len, extra_len, en.usize == 0xFFFFFFFF,
                      en.csize == 0xFFFFFFFF, en.local_offset == 0xFFFFFFFF, where);
    if (en.name.size() < 5 || en.name.compare(en.name.size() - 4, 4, ".npy") != 0)
      bad(where, "is not a .npy file");
    if (en.name.find('\0') != std::string::npos) bad(where, "name contains a NUL byte");
    if (!names.insert(en.name).second) bad(where, "duplicate member name");
    entries.push_back(std::move(en));
    p += 46 + name_len + extra_len + comment_len;
  }
  // Locate each member's data through its own local header (its name/extra lengths may differ
  // from the central directory's: NumPy writes a ZIP64 extra field only in the local header).
  for (auto& en : entries) {
    const std::string where = label + ": member '" + en.name + "'";
    if (!fits(en.local_offset, 30, cd.offset) || le(d + en.local_offset, 4) != 0x04034b50)
      bad(where, "local header lies outside the archive or is corrupt");
    const unsigned char* h = d + en.local_offset;
    uint64_t name_len = le(h + 26, 2), extra_len = le(h + 28, 2);
    if (!fits(en.local_offset + 30, name_len + extra_len, cd.offset))
      bad(where, "local header is truncated");
    if (name_len != en.name.size() || std::memcmp(h + 30, en.name.data(), name_len) != 0)
      bad(where, "local header name differs from the central directory");
    if (le(h + 8, 2) != en.method)
      bad(where, "local header method differs from the central directory");
    en.data_offset = en.local_offset + 30 + name_len + extra_len;
    if (!fits(en.data_offset, en.csize, cd.offset)) bad(where, "data lies outside the archive");
  }
  // Each member must own its byte range: overlapping members let a tiny file expand into a huge
  // one (CVE-2024-0450), which Python 3.11.7's zipfile does not check.
  std::vector<const Entry*> order;
  for (const auto& en : entries) order.push_back(&en);
  std::sort(order.begin(), order.end(),
            [](const Entry* a, const Entry* b) { return a->local_offset < b->local_offset; });
  for (size_t i = 1; i < order.size(); ++i)
    if (order[i]->local_offset < order[i - 1]->data_offset + order[i - 1]->csize)
      bad(label, "members '" + order[i - 1]->name + "' and '" + order[i]->name + "' overlap");
  return entries;
}

}  // namespace

int64_t NpyArray::numel() const {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

int NpyArray::itemsize() const { return dtype_itemsize(dtype); }

NpyArray parse_npy(const unsigned char* data, size_t size, const std::string& label) {
  static const unsigned char kMagic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
  if (size < 10 || std::memcmp(data, kMagic, 6) != 0) bad(label, "not a .npy file (bad magic)");
  int major = data[6];
  uint64_t header_len, header_start;
  if (major == 1) {
    header_len = le(data + 8, 2);
    header_start = 10;
  } else if (major == 2 || major == 3) {
    if (size < 12) bad(label, ".npy header is truncated");
    header_len = le(data + 8, 4);
    header_start = 12;
  } else {
    bad(label, "unsupported .npy format version " + std::to_string(major));
  }
  if (!fits(header_start, header_len, size)) bad(label, ".npy header is truncated");
  std::string header(reinterpret_cast<const char*>(data + header_start), header_len);
  NpyArray arr;
  bool fortran = false;
  HeaderParser(header, label).parse(arr.dtype, fortran, arr.shape);
  if (arr.dtype.size() >= 2 && arr.dtype[1] == 'O')
    bad(label, "object arrays (dtype '" + arr.dtype + "', pickled data) are not supported");
  int itemsize = dtype_itemsize(arr.dtype);
  if (itemsize == 0)
    bad(label, "unsupported dtype '" + arr.dtype + "' (need a plain little-endian numeric type)");
  if (fortran) bad(label, "Fortran-ordered arrays are not supported");
  uint64_t count = 1;
  for (int64_t dim : arr.shape) {
    uint64_t u = static_cast<uint64_t>(dim);
    if (u != 0 && count > std::numeric_limits<uint64_t>::max() / 8 / u)
      bad(label, "shape is too large");
    count *= u;
  }
  uint64_t data_start = header_start + header_len, nbytes = count * static_cast<uint64_t>(itemsize);
  // The declaration is checked against the limits before its bytes are compared or copied. A
  // member may be an array or a model's graph text: the larger limit applies here, and the model
  // reader holds each kind to its own (format/model.cpp).
  const Limits lim = limits();
  const bool text_larger = lim.max_graph_bytes > lim.max_tensor_bytes;
  const int64_t max_bytes = text_larger ? lim.max_graph_bytes : lim.max_tensor_bytes;
  if (nbytes > static_cast<uint64_t>(max_bytes))
    bad(label, "declares " + std::to_string(nbytes) + " bytes of data, past " +
                   limit_str(text_larger ? "max_graph_bytes" : "max_tensor_bytes", max_bytes));
  if (size - data_start != nbytes)
    bad(label, "data size " + std::to_string(size - data_start) +
                   " bytes does not match shape and dtype (" + std::to_string(nbytes) + " bytes)");
  arr.bytes.assign(data + data_start, data + size);
  return arr;
}

std::vector<NpyArray> read_npz_bytes(const unsigned char* data, size_t size,
                                     const std::string& label) {
  CentralDir cd = find_central_dir(data, size, label);
  const Limits lim = limits();
  if (cd.count > static_cast<uint64_t>(lim.max_members))
    bad(label, "the archive has " + std::to_string(cd.count) + " members, past " +
                   limit_str("max_members", lim.max_members));
  std::vector<Entry> entries = read_entries(data, cd, label);
  // What the members declare, summed, before any of them is inflated or copied.
  // (The graph member counts against max_graph_bytes, the arrays against max_tensor_bytes.)
  uint64_t declared = 0;
  const uint64_t most =
      static_cast<uint64_t>(lim.max_tensor_bytes) + static_cast<uint64_t>(lim.max_graph_bytes);
  for (const auto& en : entries) {
    declared +=
        std::min<uint64_t>(en.usize, uint64_t(1) << 62);  // stops at the first excess: no overflow
    if (declared > most)
      bad(label, "the members declare more than " + std::to_string(most) +
                     " bytes uncompressed, past " +
                     limit_str("max_tensor_bytes", lim.max_tensor_bytes) + " plus " +
                     limit_str("max_graph_bytes", lim.max_graph_bytes));
  }
  std::vector<NpyArray> out;
  out.reserve(entries.size());
  for (const auto& en : entries) {
    const std::string where = label + ": member '" + en.name + "'";
    const unsigned char* src = data + en.data_offset;
    std::vector<unsigned char> raw;
    if (en.method == 0) {
      if (en.csize != en.usize)
        bad(where, "stored member has different compressed and uncompressed sizes");
    } else {
      // Deflate expands at most ~1032:1; a larger claim is a bomb or corruption, and refusing it
      // keeps a forged size from making us allocate terabytes.
      if (en.usize / 1032 > en.csize + 1)
        bad(where, "declared uncompressed size is implausibly large");
      if (en.usize > std::numeric_limits<size_t>::max()) bad(where, "member is too large");
      raw.resize(static_cast<size_t>(en.usize));
      inflate_raw(src, en.csize, raw, where);
      src = raw.data();
    }
    if (crc32_of(src, en.usize) != en.crc) bad(where, "CRC-32 mismatch (corrupt data)");
    NpyArray arr = parse_npy(src, static_cast<size_t>(en.usize), where);
    arr.name = en.name.substr(0, en.name.size() - 4);
    out.push_back(std::move(arr));
  }
  return out;
}

std::vector<NpyArray> read_npz(const std::string& path) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) fail(ErrorKind::Format, path + ": cannot open file (" + std::strerror(errno) + ")");
  std::streamoff len = f.tellg();
  if (len < 0) fail(ErrorKind::Format, path + ": cannot read file");
  // The file is read whole: one larger than every member could be is refused before that.
  const Limits lim = limits();
  // In unsigned arithmetic, saturated: the limits may be set as high as 2^63 - 1 each.
  auto add = [](uint64_t a, uint64_t b) { return a > UINT64_MAX - b ? UINT64_MAX : a + b; };
  const uint64_t most = add(
      add(static_cast<uint64_t>(lim.max_tensor_bytes), static_cast<uint64_t>(lim.max_graph_bytes)),
      std::min<uint64_t>(static_cast<uint64_t>(lim.max_members), 1ull << 40) * 1024);
  if (static_cast<uint64_t>(len) > most)
    fail(ErrorKind::Format, path + ": the file is " + std::to_string(len) + " bytes, past " +
                                limit_str("max_tensor_bytes", lim.max_tensor_bytes) +
                                " (plus the graph and the archive's framing)");
  std::vector<unsigned char> buf(static_cast<size_t>(len));
  f.seekg(0);
  if (len > 0 && !f.read(reinterpret_cast<char*>(buf.data()), len))
    fail(ErrorKind::Format, path + ": read error");
  return read_npz_bytes(buf.data(), buf.size(), path);
}

}  // namespace pydeconv
