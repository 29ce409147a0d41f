// Tests for npz.hpp on hand-built archives: stored and deflated members, NumPy's ZIP64 local
// headers, ZIP64 end records, truncation at every byte, overlapping members, bad .npy headers.
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "check.hpp"
#include "format/npz.hpp"
#include "pydeconv/error.hpp"

#ifdef PYDECONV_HAVE_ZLIB
#include <zlib.h>
#endif

using namespace pydeconv;

namespace {

uint32_t crc32_bitwise(const std::string& s) {
  uint32_t c = 0xFFFFFFFFu;
  for (unsigned char b : s) {
    c ^= b;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
  }
  return c ^ 0xFFFFFFFFu;
}

void put(std::string& s, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) s += static_cast<char>((v >> (8 * i)) & 0xFF);
}

// A .npy file image as NumPy writes it: header padded with spaces so the data starts at 64 bytes.
std::string npy(const std::string& descr, const std::string& shape, const std::string& payload,
                int version = 1, const std::string& fortran = "False") {
  std::string dict =
      "{'descr': '" + descr + "', 'fortran_order': " + fortran + ", 'shape': " + shape + ", }";
  size_t prefix = version == 1 ? 10 : 12;
  size_t total = prefix + dict.size() + 1;
  dict += std::string((64 - total % 64) % 64, ' ') + "\n";
  std::string out = "\x93NUMPY";
  out += static_cast<char>(version);
  out += '\0';
  put(out, dict.size(), version == 1 ? 2 : 4);
  return out + dict + payload;
}

std::string floats(std::initializer_list<float> v) {
  std::string s(v.size() * 4, '\0');
  std::memcpy(&s[0], v.begin(), s.size());
  return s;
}

// Raw deflate made of one stored block: valid method-8 data that needs no zlib to produce.
std::string deflate_stored_block(const std::string& data) {
  std::string out;
  out += '\x01';  // BFINAL = 1, BTYPE = 00 (stored)
  put(out, data.size(), 2);
  put(out, ~data.size() & 0xFFFF, 2);
  return out + data;
}

struct Entry {
  std::string name, content;  // content: the uncompressed .npy bytes
  uint16_t method = 0;
  std::string written;  // bytes in the archive (defaults to content for method 0)
  uint16_t flags = 0;
  bool zip64_local = true;     // as NumPy 2.x writes: sizes 0xFFFFFFFF + ZIP64 extra locally
  bool zip64_central = false;  // sizes and offset only in the central ZIP64 extra field
};

Entry member(const std::string& name, const std::string& content) {
  Entry e;
  e.name = name;
  e.content = content;
  return e;
}

struct Built {
  std::string bytes;
  std::vector<size_t> local, central;
  size_t cd_offset = 0, eocd = 0;
};

Built build_zip(std::vector<Entry> entries, bool zip64_end = false,
                const std::string& comment = "") {
  Built b;
  for (auto& e : entries) {
    if (e.written.empty()) e.written = e.method == 0 ? e.content : deflate_stored_block(e.content);
    b.local.push_back(b.bytes.size());
    std::string& s = b.bytes;
    put(s, 0x04034b50, 4);
    put(s, 45, 2);
    put(s, e.flags, 2);
    put(s, e.method, 2);
    put(s, 0, 4);  // time, date
    put(s, crc32_bitwise(e.content), 4);
    put(s, e.zip64_local ? 0xFFFFFFFF : e.written.size(), 4);
    put(s, e.zip64_local ? 0xFFFFFFFF : e.content.size(), 4);
    put(s, e.name.size(), 2);
    put(s, e.zip64_local ? 20 : 0, 2);
    s += e.name;
    if (e.zip64_local) {
      put(s, 1, 2);
      put(s, 16, 2);
      put(s, e.content.size(), 8);
      put(s, e.written.size(), 8);
    }
    s += e.written;
  }
  b.cd_offset = b.bytes.size();
  for (size_t i = 0; i < entries.size(); ++i) {
    const Entry& e = entries[i];
    b.central.push_back(b.bytes.size());
    std::string& s = b.bytes;
    put(s, 0x02014b50, 4);
    put(s, 45, 2);
    put(s, 45, 2);
    put(s, e.flags, 2);
    put(s, e.method, 2);
    put(s, 0, 4);
    put(s, crc32_bitwise(e.content), 4);
    put(s, e.zip64_central ? 0xFFFFFFFF : e.written.size(), 4);
    put(s, e.zip64_central ? 0xFFFFFFFF : e.content.size(), 4);
    put(s, e.name.size(), 2);
    put(s, e.zip64_central ? 28 : 0, 2);
    put(s, 0, 2);  // comment length
    put(s, 0, 2);  // disk
    put(s, 0, 2);  // internal attributes
    put(s, 0, 4);  // external attributes
    put(s, e.zip64_central ? 0xFFFFFFFF : b.local[i], 4);
    s += e.name;
    if (e.zip64_central) {
      put(s, 1, 2);
      put(s, 24, 2);
      put(s, e.content.size(), 8);
      put(s, e.written.size(), 8);
      put(s, b.local[i], 8);
    }
  }
  size_t cd_size = b.bytes.size() - b.cd_offset;
  std::string& s = b.bytes;
  if (zip64_end) {
    size_t rec = s.size();
    put(s, 0x06064b50, 4);
    put(s, 44, 8);
    put(s, 45, 2);
    put(s, 45, 2);
    put(s, 0, 4);
    put(s, 0, 4);
    put(s, entries.size(), 8);
    put(s, entries.size(), 8);
    put(s, cd_size, 8);
    put(s, b.cd_offset, 8);
    put(s, 0x07064b50, 4);
    put(s, 0, 4);
    put(s, rec, 8);
    put(s, 1, 4);
  }
  b.eocd = s.size();
  put(s, 0x06054b50, 4);
  put(s, 0, 2);
  put(s, 0, 2);
  put(s, zip64_end ? 0xFFFF : entries.size(), 2);
  put(s, zip64_end ? 0xFFFF : entries.size(), 2);
  put(s, zip64_end ? 0xFFFFFFFF : cd_size, 4);
  put(s, zip64_end ? 0xFFFFFFFF : b.cd_offset, 4);
  put(s, comment.size(), 2);
  s += comment;
  return b;
}

std::vector<NpyArray> read(const std::string& bytes) {
  return read_npz_bytes(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(),
                        "test.npz");
}

// Runs `fn`, requires an Error(Format) whose message contains `needle`.
template <typename F>
void expect_format_error(F fn, const std::string& needle, int line) {
  try {
    fn();
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::Format)
      check::fail_at(__FILE__, line, "wrong error kind: " + std::string(e.what()));
    if (std::string(e.what()).find(needle) == std::string::npos)
      check::fail_at(__FILE__, line, "message lacks '" + needle + "': " + e.what());
    return;
  }
  check::fail_at(__FILE__, line, "no error (expected '" + needle + "')");
}
#define EXPECT_FORMAT(stmt, needle) expect_format_error([&] { stmt; }, needle, __LINE__)

Entry weight_entry() {
  return member("conv1/weight.npy", npy("<f4", "(2, 2)", floats({1.5f, -2.0f, 3.25f, 0.0f})));
}

Entry graph_entry() { return member("__graph__.npy", npy("|u1", "(3,)", "{ }")); }

}  // namespace

TEST(reads_stored_members_with_numpy_zip64_local_headers) {
  auto arrays = read(build_zip({weight_entry(), graph_entry()}).bytes);
  CHECK(arrays.size() == 2);
  CHECK(arrays[0].name == "conv1/weight");
  CHECK(arrays[0].dtype == "<f4");
  CHECK((arrays[0].shape == std::vector<int64_t>{2, 2}));
  CHECK(arrays[0].numel() == 4 && arrays[0].itemsize() == 4);
  float v[4];
  std::memcpy(v, arrays[0].bytes.data(), 16);
  CHECK(v[0] == 1.5f && v[1] == -2.0f && v[2] == 3.25f && v[3] == 0.0f);
  CHECK(arrays[1].name == "__graph__" && arrays[1].dtype == "|u1");
  CHECK(std::string(arrays[1].bytes.begin(), arrays[1].bytes.end()) == "{ }");
}

TEST(reads_plain_local_headers_zip64_end_records_and_comments) {
  Entry a = weight_entry(), g = graph_entry();
  a.zip64_local = g.zip64_local = false;
  CHECK(read(build_zip({a, g}).bytes).size() == 2);
  CHECK(read(build_zip({weight_entry()}, true).bytes).size() == 1);
  Entry z = weight_entry();
  z.zip64_central = true;
  CHECK(read(build_zip({z, graph_entry()}, true, "a comment").bytes)[0].numel() == 4);
  CHECK(read(build_zip({}).bytes).empty());
}

TEST(reads_deflated_members) {
  Entry e = weight_entry();
  e.method = 8;
#ifdef PYDECONV_HAVE_ZLIB
  auto arrays = read(build_zip({e, graph_entry()}).bytes);
  CHECK(arrays[0].bytes.size() == 16 && arrays[0].shape[1] == 2);
  // Real zlib output too (what np.savez_compressed writes), on a compressible payload.
  Entry big = member("zeros.npy", npy("<f8", "(1000,)", std::string(8000, '\0')));
  big.method = 8;
  std::string packed(compressBound(big.content.size()), '\0');
  z_stream zs{};
  CHECK(deflateInit2(&zs, 6, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  zs.next_in = reinterpret_cast<Bytef*>(&big.content[0]);
  zs.avail_in = static_cast<uInt>(big.content.size());
  zs.next_out = reinterpret_cast<Bytef*>(&packed[0]);
  zs.avail_out = static_cast<uInt>(packed.size());
  CHECK(deflate(&zs, Z_FINISH) == Z_STREAM_END);
  packed.resize(zs.total_out);
  deflateEnd(&zs);
  big.written = packed;
  CHECK(packed.size() < 200);
  auto z = read(build_zip({big}).bytes);
  CHECK(z[0].shape[0] == 1000 && z[0].bytes == std::vector<unsigned char>(8000, 0));
  // Declared sizes that disagree with the stream are errors.
  Built wrong = build_zip({e});
  wrong.bytes[wrong.central[0] + 24] += 1;  // uncompressed size one byte larger
  EXPECT_FORMAT(read(wrong.bytes), "smaller than the declared size");
  Entry trunc = weight_entry();
  trunc.method = 8;
  trunc.written = deflate_stored_block(trunc.content).substr(0, 40);
  EXPECT_FORMAT(read(build_zip({trunc}).bytes), "truncated");
  Entry junk = weight_entry();
  junk.method = 8;
  junk.written = std::string("\xff\xff\xff\xff", 4);
  EXPECT_FORMAT(read(build_zip({junk}).bytes), "conv1/weight.npy");
#else
  EXPECT_FORMAT(read(build_zip({e}).bytes), "without zlib");
#endif
}

TEST(every_truncation_throws) {
  for (bool z64 : {false, true}) {
    Entry e = weight_entry();
    e.method = 8;
    const std::string full = build_zip({weight_entry(), e}, z64).bytes;
    for (size_t n = 0; n < full.size(); ++n) {
      bool threw = false;
      try {
        read(full.substr(0, n));
      } catch (const Error& err) {
        threw = err.kind() == ErrorKind::Format;
      }
      if (!threw)
        check::fail_at(__FILE__, __LINE__, "accepted a truncation at " + std::to_string(n));
    }
  }
}

TEST(every_single_byte_corruption_is_safe) {
  // Flipping any byte either still reads (e.g. a timestamp) or throws Error: never a crash
  // (run under ASan/UBSan to see the "never reads out of bounds" half of the claim).
  const std::string full = build_zip({weight_entry(), graph_entry()}, true).bytes;
  int errors = 0;
  for (size_t i = 0; i < full.size(); ++i) {
    for (unsigned char x : {0x01, 0x80, 0xFF}) {
      std::string bad = full;
      bad[i] = static_cast<char>(bad[i] ^ x);
      try {
        read(bad);
      } catch (const Error&) {
        ++errors;
      }
    }
  }
  CHECK(errors > static_cast<int>(full.size()));
}

TEST(rejects_overlapping_duplicate_encrypted_and_foreign_members) {
  // Member a's declared data runs into member b's local header (the CVE-2024-0450 pattern).
  Entry a = weight_entry(), b = graph_entry();
  a.zip64_local = b.zip64_local = false;
  Built over = build_zip({a, b});
  uint32_t longer = static_cast<uint32_t>(a.content.size() + 10);
  for (int k = 0; k < 2; ++k) {
    std::string& s = over.bytes;
    for (int i = 0; i < 4; ++i)
      s[over.central[0] + 20 + k * 4 + i] = static_cast<char>((longer >> (8 * i)) & 0xFF);
  }
  EXPECT_FORMAT(read(over.bytes), "overlap");
  // Two directory entries naming one local header.
  Built twice = build_zip({a, a});
  EXPECT_FORMAT(read(twice.bytes), "duplicate");
  Entry c = a;
  c.name = "other.npy";
  Built same = build_zip({a, c});
  for (int i = 0; i < 4; ++i) same.bytes[same.central[1] + 42 + i] = 0;  // c's offset -> a's header
  EXPECT_FORMAT(read(same.bytes), "other.npy");
  Entry enc = weight_entry();
  enc.flags = 1;
  EXPECT_FORMAT(read(build_zip({enc}).bytes), "encrypted");
  EXPECT_FORMAT(read(build_zip({member("notes.txt", "hello")}).bytes), "not a .npy file");
  EXPECT_FORMAT(read(build_zip({member(".npy", npy("<f4", "()", floats({1})))}).bytes),
                "not a .npy file");
  Entry bz = weight_entry();
  bz.method = 12;
  EXPECT_FORMAT(read(build_zip({bz}).bytes), "compression method 12");
  Built crc = build_zip({weight_entry()});
  crc.bytes[crc.cd_offset - 1] ^= 0x40;  // last data byte
  EXPECT_FORMAT(read(crc.bytes), "CRC");
  EXPECT_FORMAT(read("PK\x05\x06 not really"), "not a zip archive");
  std::string huge_count = build_zip({weight_entry()}).bytes;
  huge_count[huge_count.size() - 12] = '\xff';  // 255 entries claimed for a 1-entry directory
  huge_count[huge_count.size() - 14] = '\xff';
  EXPECT_FORMAT(read(huge_count), "entry count");
}

TEST(parses_npy_versions_dtypes_and_shapes) {
  auto parse = [](const std::string& s) {
    return parse_npy(reinterpret_cast<const unsigned char*>(s.data()), s.size(), "x.npy");
  };
  NpyArray v2 = parse(npy("<i8", "(1, 2)", std::string(16, '\x01'), 2));
  CHECK(v2.dtype == "<i8" && v2.numel() == 2);
  CHECK(parse(npy("<f4", "()", floats({7}), 3)).shape.empty());
  CHECK(parse(npy("<f2", "(0, 5)", "")).numel() == 0);
  CHECK(parse(npy("|b1", "(3,)", std::string("\x01\x00\x01", 3))).itemsize() == 1);
  CHECK(parse(npy("<f8", "(2,)", std::string(16, '\0'))).shape[0] == 2);
  // Double-quoted strings and a header without the trailing comma are fine too.
  std::string dq = npy("<f4", "(1,)", floats({1}));
  dq.replace(dq.find("'descr'"), 7, "\"descr\"");
  CHECK(parse(dq).numel() == 1);
}

TEST(rejects_bad_npy_headers) {
  auto parse = [](const std::string& s) {
    return parse_npy(reinterpret_cast<const unsigned char*>(s.data()), s.size(), "x.npy");
  };
  const std::string ok = npy("<f4", "(2,)", floats({1, 2}));
  EXPECT_FORMAT(parse("\x93NUMPZ\x01\x00"), "bad magic");
  EXPECT_FORMAT(parse(npy("<f4", "(2,)", floats({1, 2}), 4)), "version 4");
  EXPECT_FORMAT(parse(npy("|O", "(1,)", std::string(8, '\0'))), "object arrays");
  EXPECT_FORMAT(parse(npy(">f4", "(2,)", floats({1, 2}))), "unsupported dtype '>f4'");
  EXPECT_FORMAT(parse(npy("<c8", "(1,)", std::string(8, '\0'))), "unsupported dtype");
  EXPECT_FORMAT(parse(npy("<f4", "(2,)", floats({1, 2}), 1, "True")), "Fortran");
  EXPECT_FORMAT(parse(npy("<f4", "(3,)", floats({1, 2}))), "does not match");
  EXPECT_FORMAT(parse(npy("<f4", "(-2,)", floats({1, 2}))), "shape");
  EXPECT_FORMAT(parse(npy("<f4", "(99999999999999999999,)", "")), "too large");
  EXPECT_FORMAT(parse(npy("<f4", "(4294967296, 4294967296, 4294967296)", "")), "too large");
  std::string structured = ok;
  structured.replace(structured.find("'<f4'"), 5, "[('a',");
  EXPECT_FORMAT(parse(structured), "structured");
  std::string extra_key = ok;
  extra_key.replace(extra_key.find("'shape'"), 7, "'shapy'");
  EXPECT_FORMAT(parse(extra_key), "unexpected key 'shapy'");
  std::string garbage = ok;
  garbage[garbage.find('}') + 1] = 'x';
  EXPECT_FORMAT(parse(garbage), "trailing characters");
  std::string long_header = ok;
  long_header[8] = '\xff';
  EXPECT_FORMAT(parse(long_header), "truncated");
  for (size_t n = 0; n < ok.size(); ++n) EXPECT_FORMAT(parse(ok.substr(0, n)), "x.npy");
}

TEST(read_npz_reads_files_and_names_missing_ones) {
  const std::string path = "/tmp/pydeconv_test_npz.npz";
  {
    std::string bytes = build_zip({weight_entry()}).bytes;
    std::ofstream f(path, std::ios::binary);
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  CHECK(read_npz(path)[0].name == "conv1/weight");
  std::remove(path.c_str());
  EXPECT_FORMAT(read_npz(path), path);
}

PYDECONV_TEST_MAIN()
