// A strict recursive-descent JSON parser and compact writer. See json.hpp for the contract.
#include "format/json.hpp"

#include <charconv>
#include <cmath>
#include <set>

#include "pydeconv/error.hpp"
#include "pydeconv/limits.hpp"

namespace pydeconv {

// ---------------------------------------------------------------------------------------------
// Parsing

class JsonParser {
 public:
  // The depth is read once per document from the limits in force (pydeconv/limits.hpp).
  explicit JsonParser(const std::string& text) : s_(text), max_depth_(limits().max_json_depth) {}

  Json parse_document() {
    skip_ws();
    Json v = value(0);
    skip_ws();
    if (pos_ != s_.size()) error("unexpected characters after the JSON value");
    return v;
  }

 private:
  [[noreturn]] void error(const std::string& what) const {
    // Line and column (1-based, column in bytes) of the current position, for humans.
    size_t line = 1, col = 1;
    for (size_t i = 0; i < pos_ && i < s_.size(); ++i) {
      if (s_[i] == '\n') {
        ++line;
        col = 1;
      } else {
        ++col;
      }
    }
    fail(ErrorKind::Format, "JSON error at line " + std::to_string(line) + ", column " +
                                std::to_string(col) + ": " + what);
  }

  // A character for a message: printable ASCII as itself, anything else as its byte value (the
  // message must stay valid UTF-8 whatever the input holds).
  static std::string shown_char(unsigned char c) {
    if (c >= 0x20 && c < 0x7F) return "character '" + std::string(1, char(c)) + "'";
    static const char* kHex = "0123456789abcdef";
    return std::string("byte 0x") + kHex[c >> 4] + kHex[c & 15];
  }

  int peek() const { return pos_ < s_.size() ? static_cast<unsigned char>(s_[pos_]) : -1; }

  void skip_ws() {
    while (pos_ < s_.size() &&
           (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r'))
      ++pos_;
  }

  void literal(const char* word) {
    size_t n = std::char_traits<char>::length(word);
    if (s_.compare(pos_, n, word) != 0) error("invalid literal");
    pos_ += n;
  }

  Json value(int depth) {
    switch (peek()) {
      case '{': return object(depth + 1);
      case '[': return array(depth + 1);
      case '"': return Json(string());
      case 't': literal("true"); return Json(true);
      case 'f': literal("false"); return Json(false);
      case 'n': literal("null"); return Json();
      case -1: error("unexpected end of input");
      default:
        if (peek() == '-' || (peek() >= '0' && peek() <= '9')) return number();
        error("unexpected " + shown_char(static_cast<unsigned char>(s_[pos_])));
    }
  }

  Json object(int depth) {
    if (depth > max_depth_) error("nesting deeper than " + limit_str("max_json_depth", max_depth_));
    ++pos_;  // '{'
    Json obj = Json::object();
    std::set<std::string> seen;
    skip_ws();
    if (peek() == '}') {
      ++pos_;
      return obj;
    }
    for (;;) {
      skip_ws();
      if (peek() != '"') error("expected a string key");
      size_t key_pos = pos_;
      std::string key = string();
      if (!seen.insert(key).second) {
        pos_ = key_pos;
        error("duplicate key \"" + key + "\"");
      }
      skip_ws();
      if (peek() != ':') error("expected ':'");
      ++pos_;
      skip_ws();
      obj.obj_.emplace_back(std::move(key), value(depth));
      skip_ws();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      if (peek() == '}') {
        ++pos_;
        return obj;
      }
      error("expected ',' or '}'");
    }
  }

  Json array(int depth) {
    if (depth > max_depth_) error("nesting deeper than " + limit_str("max_json_depth", max_depth_));
    ++pos_;  // '['
    Json arr = Json::array();
    skip_ws();
    if (peek() == ']') {
      ++pos_;
      return arr;
    }
    for (;;) {
      skip_ws();
      arr.arr_.push_back(value(depth));
      skip_ws();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      if (peek() == ']') {
        ++pos_;
        return arr;
      }
      error("expected ',' or ']'");
    }
  }

  Json number() {
    size_t start = pos_;
    bool integer = true;
    if (peek() == '-') ++pos_;
    if (peek() == '0') {
      ++pos_;
    } else if (peek() >= '1' && peek() <= '9') {
      while (peek() >= '0' && peek() <= '9') ++pos_;
    } else {
      error("invalid number");
    }
    if (peek() == '.') {
      integer = false;
      ++pos_;
      if (!(peek() >= '0' && peek() <= '9')) error("invalid number (digits expected after '.')");
      while (peek() >= '0' && peek() <= '9') ++pos_;
    }
    if (peek() == 'e' || peek() == 'E') {
      integer = false;
      ++pos_;
      if (peek() == '+' || peek() == '-') ++pos_;
      if (!(peek() >= '0' && peek() <= '9')) error("invalid number (digits expected in exponent)");
      while (peek() >= '0' && peek() <= '9') ++pos_;
    }
    const char* first = s_.data() + start;
    const char* last = s_.data() + pos_;
    // from_chars is locale-independent (strtod would honour a ',' decimal point).
    double d = 0.0;
    auto r = std::from_chars(first, last, d);
    if (r.ec != std::errc() || r.ptr != last || !std::isfinite(d)) {
      pos_ = start;
      error("number out of range");
    }
    Json v(d);
    int64_t i = 0;
    // "-0" stays the double -0.0: an integer has no negative zero, and reading it as 0 broke
    // parse(dump(v)).dump() == dump(v) for v = -0.0 (found by fuzz_json).
    if (integer && !(d == 0.0 && std::signbit(d))) {
      auto ri = std::from_chars(first, last, i);
      if (ri.ec == std::errc() && ri.ptr == last) {
        v.is_int_ = true;
        v.int_ = i;
      }
    }
    return v;
  }

  unsigned hex4() {
    if (pos_ + 4 > s_.size()) error("truncated \\u escape");
    unsigned v = 0;
    for (int i = 0; i < 4; ++i) {
      char c = s_[pos_++];
      v <<= 4;
      if (c >= '0' && c <= '9')
        v |= unsigned(c - '0');
      else if (c >= 'a' && c <= 'f')
        v |= unsigned(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F')
        v |= unsigned(c - 'A' + 10);
      else
        error("invalid \\u escape");
    }
    return v;
  }

  static void put_utf8(std::string& out, unsigned cp) {
    if (cp < 0x80) {
      out += char(cp);
    } else if (cp < 0x800) {
      out += char(0xC0 | (cp >> 6));
      out += char(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += char(0xE0 | (cp >> 12));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    } else {
      out += char(0xF0 | (cp >> 18));
      out += char(0x80 | ((cp >> 12) & 0x3F));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    }
  }

  // Copies one raw UTF-8 sequence, rejecting overlong forms, surrogates and code points > U+10FFFF.
  void copy_utf8(std::string& out) {
    unsigned char c = static_cast<unsigned char>(s_[pos_]);
    int extra;
    unsigned cp, min;
    if (c >= 0xC2 && c <= 0xDF) {
      extra = 1;
      cp = c & 0x1F;
      min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
      extra = 2;
      cp = c & 0x0F;
      min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
      extra = 3;
      cp = c & 0x07;
      min = 0x10000;
    } else
      error("invalid UTF-8 in string");
    if (pos_ + 1 + extra > s_.size()) error("invalid UTF-8 in string");
    for (int i = 1; i <= extra; ++i) {
      unsigned char cc = static_cast<unsigned char>(s_[pos_ + i]);
      if ((cc & 0xC0) != 0x80) error("invalid UTF-8 in string");
      cp = (cp << 6) | (cc & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      error("invalid UTF-8 in string");
    out.append(s_, pos_, 1 + extra);
    pos_ += 1 + extra;
  }

  std::string string() {
    ++pos_;  // opening quote
    std::string out;
    for (;;) {
      int c = peek();
      if (c == -1) error("unterminated string");
      if (c == '"') {
        ++pos_;
        return out;
      }
      if (c < 0x20) error("control character in string (must be escaped)");
      if (c >= 0x80) {
        copy_utf8(out);
        continue;
      }
      ++pos_;
      if (c != '\\') {
        out += char(c);
        continue;
      }
      int e = peek();
      ++pos_;
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          unsigned cp = hex4();
          if (cp >= 0xDC00 && cp <= 0xDFFF) error("unpaired low surrogate in \\u escape");
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (s_.compare(pos_, 2, "\\u") != 0) error("unpaired high surrogate in \\u escape");
            pos_ += 2;
            unsigned lo = hex4();
            if (lo < 0xDC00 || lo > 0xDFFF) error("invalid low surrogate in \\u escape");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          put_utf8(out, cp);
          break;
        }
        default: --pos_; error("invalid escape sequence");
      }
    }
  }

  const std::string& s_;
  const int64_t max_depth_;
  size_t pos_ = 0;
};

Json Json::parse(const std::string& text) { return JsonParser(text).parse_document(); }

// ---------------------------------------------------------------------------------------------
// Building and access

Json::Json(double v) : type_(Type::Number), num_(v) {
  if (!std::isfinite(v)) fail(ErrorKind::Value, "JSON numbers must be finite");
}

Json::Json(integer_tag, int64_t v) : type_(Type::Number), is_int_(true), int_(v), num_(double(v)) {}

Json Json::array(Array items) {
  Json j;
  j.type_ = Type::Array;
  j.arr_ = std::move(items);
  return j;
}

Json Json::object(Object members) {
  Json j;
  j.type_ = Type::Object;
  std::set<std::string> seen;
  for (auto& kv : members) {
    if (!seen.insert(kv.first).second)
      fail(ErrorKind::Value, "duplicate JSON key \"" + kv.first + "\"");
  }
  j.obj_ = std::move(members);
  return j;
}

Json& Json::push_back(Json v) {
  require(Type::Array);
  arr_.push_back(std::move(v));
  return *this;
}

Json& Json::set(const std::string& key, Json v) {
  require(Type::Object);
  for (auto& kv : obj_) {
    if (kv.first == key) {
      kv.second = std::move(v);
      return *this;
    }
  }
  obj_.emplace_back(key, std::move(v));
  return *this;
}

const char* Json::type_name(Type t) {
  switch (t) {
    case Type::Null: return "null";
    case Type::Bool: return "a boolean";
    case Type::Number: return "a number";
    case Type::String: return "a string";
    case Type::Array: return "an array";
    case Type::Object: return "an object";
  }
  return "?";
}

void Json::require(Type t) const {
  if (type_ != t)
    fail(ErrorKind::Format, std::string("expected ") + type_name(t) + ", got " + type_name(type_));
}

bool Json::is_integer() const {
  if (type_ != Type::Number) return false;
  // 2^63 is exactly representable; anything at or above it does not fit int64.
  return is_int_ || (std::floor(num_) == num_ && num_ >= -9223372036854775808.0 &&
                     num_ < 9223372036854775808.0);
}

bool Json::as_bool() const {
  require(Type::Bool);
  return bool_;
}

double Json::as_number() const {
  require(Type::Number);
  return num_;
}

int64_t Json::as_int() const {
  require(Type::Number);
  if (is_int_) return int_;
  if (!is_integer()) fail(ErrorKind::Format, "expected an integer, got " + dump());
  return static_cast<int64_t>(num_);
}

const std::string& Json::as_string() const {
  require(Type::String);
  return str_;
}

const Json::Array& Json::as_array() const {
  require(Type::Array);
  return arr_;
}

const Json::Object& Json::as_object() const {
  require(Type::Object);
  return obj_;
}

const Json* Json::find(const std::string& key) const {
  require(Type::Object);
  for (const auto& kv : obj_)
    if (kv.first == key) return &kv.second;
  return nullptr;
}

bool Json::has(const std::string& key) const { return find(key) != nullptr; }

const Json& Json::at(const std::string& key) const {
  const Json* v = find(key);
  if (!v) fail(ErrorKind::Format, "missing key \"" + key + "\"");
  return *v;
}

const Json& Json::at(size_t i) const {
  require(Type::Array);
  if (i >= arr_.size())
    fail(ErrorKind::Format, "index " + std::to_string(i) + " out of range (array of " +
                                std::to_string(arr_.size()) + ")");
  return arr_[i];
}

size_t Json::size() const {
  if (type_ == Type::Array) return arr_.size();
  if (type_ == Type::Object) return obj_.size();
  fail(ErrorKind::Format, std::string("expected an array or an object, got ") + type_name(type_));
}

bool Json::operator==(const Json& o) const {
  if (type_ != o.type_) return false;
  switch (type_) {
    case Type::Null: return true;
    case Type::Bool: return bool_ == o.bool_;
    case Type::Number: return (is_int_ && o.is_int_) ? int_ == o.int_ : num_ == o.num_;
    case Type::String: return str_ == o.str_;
    case Type::Array: return arr_ == o.arr_;
    case Type::Object: return obj_ == o.obj_;
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// Writing

static void dump_string(std::string& out, const std::string& s) {
  static const char* kHex = "0123456789abcdef";
  out += '"';
  for (char ch : s) {
    unsigned char c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out += kHex[c >> 4];
          out += kHex[c & 15];
        } else {
          out += ch;  // UTF-8 passes through unchanged
        }
    }
  }
  out += '"';
}

void Json::dump_to(std::string& out) const {
  char buf[32];
  switch (type_) {
    case Type::Null: out += "null"; break;
    case Type::Bool: out += bool_ ? "true" : "false"; break;
    case Type::Number: {
      // Shortest text that reads back to the same double (or the exact integer).
      auto r = is_int_ ? std::to_chars(buf, buf + sizeof(buf), int_)
                       : std::to_chars(buf, buf + sizeof(buf), num_);
      out.append(buf, r.ptr);
      break;
    }
    case Type::String: dump_string(out, str_); break;
    case Type::Array:
      out += '[';
      for (size_t i = 0; i < arr_.size(); ++i) {
        if (i) out += ',';
        arr_[i].dump_to(out);
      }
      out += ']';
      break;
    case Type::Object:
      out += '{';
      for (size_t i = 0; i < obj_.size(); ++i) {
        if (i) out += ',';
        dump_string(out, obj_[i].first);
        out += ':';
        obj_[i].second.dump_to(out);
      }
      out += '}';
      break;
  }
}

std::string Json::dump() const {
  std::string out;
  dump_to(out);
  return out;
}

}  // namespace pydeconv
