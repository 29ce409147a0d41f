// pydeconv: a small, strict JSON value for the model graph (docs/FORMAT.md).
//
// Strict RFC 8259: no comments, no trailing commas, no NaN/Infinity, no duplicate object keys,
// valid UTF-8 only, nesting at most Limits::max_json_depth deep (pydeconv/limits.hpp). Objects keep
// their members in file order. Every error is pydeconv::Error(ErrorKind::Format): parse errors
// carry "line L, column C", access errors name the expected type or the missing key.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace pydeconv {

class Json {
 public:
  enum class Type { Null, Bool, Number, String, Array, Object };
  using Array = std::vector<Json>;
  using Object = std::vector<std::pair<std::string, Json>>;

  static Json parse(const std::string& text);

  // Builders. Numbers must be finite (Error(Value) otherwise: JSON cannot hold NaN/Infinity).
  Json() = default;  // null
  Json(std::nullptr_t) {}
  Json(bool b) : type_(Type::Bool), bool_(b) {}
  Json(double v);
  template <typename T,
            typename = std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, bool>>>
  Json(T v) : Json(integer_tag{}, static_cast<int64_t>(v)) {}
  Json(const char* s) : type_(Type::String), str_(s) {}
  Json(std::string s) : type_(Type::String), str_(std::move(s)) {}
  static Json array(Array items = {});
  static Json object(Object members = {});
  Json& push_back(Json v);                    // arrays only
  Json& set(const std::string& key, Json v);  // objects only: replaces or appends

  Type type() const { return type_; }
  bool is_null() const { return type_ == Type::Null; }
  bool is_bool() const { return type_ == Type::Bool; }
  bool is_number() const { return type_ == Type::Number; }
  bool is_integer() const;  // a number with an integral value that fits int64
  bool is_string() const { return type_ == Type::String; }
  bool is_array() const { return type_ == Type::Array; }
  bool is_object() const { return type_ == Type::Object; }

  bool as_bool() const;
  double as_number() const;
  int64_t as_int() const;  // exact for integer literals; throws unless the number is integral
  const std::string& as_string() const;
  const Array& as_array() const;
  const Object& as_object() const;

  bool has(const std::string& key) const;          // objects only
  const Json* find(const std::string& key) const;  // nullptr when absent; objects only
  const Json& at(const std::string& key) const;    // throws naming the missing key
  const Json& at(size_t i) const;                  // arrays only, bounds-checked
  size_t size() const;                             // arrays and objects

  std::string dump() const;  // compact; parse(dump()) == *this
  bool operator==(const Json& o) const;
  bool operator!=(const Json& o) const { return !(*this == o); }

  static const char* type_name(Type t);  // "null", "a number", ... for messages

 private:
  struct integer_tag {};
  Json(integer_tag, int64_t v);
  void require(Type t) const;
  void dump_to(std::string& out) const;
  friend class JsonParser;

  Type type_ = Type::Null;
  bool bool_ = false;
  bool is_int_ = false;  // written as an integer literal (or built from one): int_ is exact
  int64_t int_ = 0;
  double num_ = 0.0;
  std::string str_;
  Array arr_;
  Object obj_;
};

}  // namespace pydeconv
