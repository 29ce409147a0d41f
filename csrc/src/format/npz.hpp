// pydeconv: a strict reader for NumPy .npy arrays and .npz archives (np.savez /
// np.savez_compressed).
//
// Hostile input never crashes the reader: every offset and length is checked, overlapping members
// (the CVE-2024-0450 zip-bomb pattern), duplicate names, encrypted members and pickled (object)
// arrays are rejected. Errors are pydeconv::Error(ErrorKind::Format) naming the file and member.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace pydeconv {

struct NpyArray {
  std::string name;            // member name without ".npy" (empty from parse_npy)
  std::string dtype;           // NumPy descr as stored: "<f4", "|u1", "<i8", "|b1", ...
  std::vector<int64_t> shape;  // empty for a 0-d array
  std::vector<unsigned char>
      bytes;  // raw little-endian element data, C order (copied, unaligned-safe)

  int64_t numel() const;  // product of shape (1 for a 0-d array)
  int itemsize() const;   // bytes per element, from dtype
};

// Reads a whole .npz file. Members must all be .npy files; they are returned in central-directory
// order. Stored (method 0) and deflated (method 8, needs zlib at build time) members are supported.
std::vector<NpyArray> read_npz(const std::string& path);

// The same on an archive already in memory; `label` names it in error messages.
std::vector<NpyArray> read_npz_bytes(const unsigned char* data, size_t size,
                                     const std::string& label);

// Parses one .npy file image (format versions 1, 2 and 3). Only plain numeric, little-endian or
// byte-order-free dtypes in C order are accepted.
NpyArray parse_npy(const unsigned char* data, size_t size, const std::string& label);

}  // namespace pydeconv
