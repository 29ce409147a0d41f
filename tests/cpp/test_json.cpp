// Tests for json.hpp: parsing, access, building, round trips and every error path.
#include <cmath>
#include <limits>
#include <string>

#include "check.hpp"
#include "format/json.hpp"
#include "pydeconv/error.hpp"
#include "pydeconv/limits.hpp"

using namespace pydeconv;

namespace {

// Requires Error(Format) whose message contains `needle`.
void expect_error(const std::string& text, const std::string& needle, int line) {
  try {
    Json::parse(text);
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::Format)
      check::fail_at(__FILE__, line, "wrong error kind for " + text);
    if (std::string(e.what()).find(needle) == std::string::npos)
      check::fail_at(__FILE__, line,
                     "message for `" + text + "` lacks '" + needle + "': " + e.what());
    return;
  }
  check::fail_at(__FILE__, line, "accepted invalid JSON: " + text);
}
#define EXPECT_PARSE_ERROR(text, needle) expect_error(text, needle, __LINE__)

template <typename F>
std::string access_error(F fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.kind() == ErrorKind::Format ? e.what() : "wrong kind";
  }
  return "no error";
}

}  // namespace

TEST(parses_a_model_graph) {
  const std::string text = R"({
    "format": "pydeconv", "version": 1,
    "input": {"name": "input", "shape": [3, 224, 224]},
    "preprocess": {"scale": 0.00392156862745098, "mean": [0.485, 0.456, 0.406], "flip": false},
    "labels": null,
    "layers": [{"name": "conv1", "kind": "conv2d", "attrs": {"stride": [2, 2]}}]
  })";
  Json g = Json::parse(text);
  CHECK(g.is_object() && g.size() == 6);
  CHECK(g.as_object()[0].first == "format" &&
        g.as_object()[5].first == "layers");  // file order kept
  CHECK(g.at("format").as_string() == "pydeconv");
  CHECK(g.at("version").as_int() == 1);
  CHECK(g.at("input").at("shape").at(2).as_int() == 224);
  CHECK(g.at("preprocess").at("scale").as_number() == 0.00392156862745098);
  CHECK(g.at("preprocess").at("flip").as_bool() == false);
  CHECK(g.at("labels").is_null());
  CHECK(g.has("layers") && !g.has("outputs") && g.find("outputs") == nullptr);
  CHECK(g.at("layers").at(0).at("attrs").at("stride").as_array().size() == 2);
}

TEST(numbers_integers_and_strings) {
  Json a = Json::parse("[0, -0, 12, -7, 1.5, 2e3, 1E-2, -0.25e+1, 9007199254740993, 1e300]");
  CHECK(a.at(0).as_int() == 0 && a.at(2).as_int() == 12 && a.at(3).as_int() == -7);
  CHECK(a.at(4).as_number() == 1.5 && !a.at(4).is_integer());
  CHECK(a.at(5).is_integer() && a.at(5).as_int() == 2000);  // integral value, even if written 2e3
  CHECK(a.at(6).as_number() == 0.01 && a.at(7).as_number() == -2.5);
  CHECK(a.at(8).as_int() == 9007199254740993LL);  // integer literals stay exact beyond 2^53
  CHECK(!a.at(9).is_integer());
  CHECK(access_error([&] { a.at(4).as_int(); }).find("expected an integer") != std::string::npos);
  CHECK(access_error([&] { a.at(9).as_int(); }).find("expected an integer") != std::string::npos);

  Json s = Json::parse(R"(["a\"b\\c\/d\b\f\n\r\t", "\u00e9\u4e2d", "\ud83d\ude00", "héllo"])");
  CHECK(s.at(0).as_string() == "a\"b\\c/d\b\f\n\r\t");
  CHECK(s.at(1).as_string() == "\xc3\xa9\xe4\xb8\xad");
  CHECK(s.at(2).as_string() == "\xf0\x9f\x98\x80");  // surrogate pair -> U+1F600
  CHECK(s.at(3).as_string() == "h\xc3\xa9llo");
}

TEST(wrong_type_access_names_both_types) {
  Json j = Json::parse(R"({"n": 1, "s": "x", "a": [1]})");
  CHECK(access_error([&] { j.at("s").as_number(); }) == "expected a number, got a string");
  CHECK(access_error([&] { j.at("n").as_string(); }) == "expected a string, got a number");
  CHECK(access_error([&] { j.at("n").as_bool(); }) == "expected a boolean, got a number");
  CHECK(access_error([&] { j.at("a").as_object(); }) == "expected an object, got an array");
  CHECK(access_error([&] { j.as_array(); }) == "expected an array, got an object");
  CHECK(access_error([&] { j.at("missing"); }) == "missing key \"missing\"");
  CHECK(access_error([&] { j.at("a").at(1); }).find("index 1 out of range") != std::string::npos);
  CHECK(access_error([&] { j.at("n").size(); }).find("expected an array or an object") !=
        std::string::npos);
  CHECK(access_error([&] { j.at("a").has("x"); }) == "expected an object, got an array");
}

TEST(build_and_round_trip) {
  Json obj = Json::object();
  obj.set("name", "tiny").set("n", 3).set("pi", 3.25).set("ok", true).set("none", nullptr);
  obj.set("list", Json::array({1, 2.5, "three", Json::array(), Json::object()}));
  obj.set("esc", std::string("q\"\\\n\x01\xc3\xa9"));
  obj.set("n", int64_t(-9000000000LL));  // replaces, keeps position
  const std::string text = obj.dump();
  CHECK(
      text ==
      R"({"name":"tiny","n":-9000000000,"pi":3.25,"ok":true,"none":null,"list":[1,2.5,"three",[],{}],)"
      R"("esc":"q\"\\\n\u0001)"
      "\xc3\xa9"
      R"("})");
  Json back = Json::parse(text);
  CHECK(back == obj);
  CHECK(back.dump() == text);
  // Doubles print the shortest text that reads back to the same value.
  for (double d : {0.1, 1.0 / 3.0, 1e-300, 123456789.123, -2.5e21}) {
    Json v(d);
    CHECK(Json::parse(v.dump()).as_number() == d);
  }
  // Negative zero reads back as itself (an integer has none): fuzz_json's idempotence check.
  CHECK(Json(-0.0).dump() == "-0");
  CHECK(Json::parse("-0").dump() == "-0");
  CHECK(Json::parse(Json::parse("-0.0").dump()).dump() == "-0");
  CHECK(std::signbit(Json::parse("-0").as_number()));
  CHECK(Json::parse("-0").as_int() == 0);
  CHECK(Json::parse("0").dump() == "0");
  CHECK(Json::parse(" [ ] ").dump() == "[]");
  CHECK(Json::parse("\t{ }\r\n").dump() == "{}");
  CHECK(Json(false) != Json(0));
  CHECK_THROWS(Json(std::numeric_limits<double>::infinity()));
  CHECK_THROWS(Json::object({{"a", 1}, {"a", 2}}));
  CHECK_THROWS(Json(1).push_back(2));
}

TEST(every_syntax_error_is_reported_with_position) {
  EXPECT_PARSE_ERROR("", "line 1, column 1: unexpected end of input");
  EXPECT_PARSE_ERROR("{\n  \"a\": 1,\n  \"b\" 2}", "line 3, column 7: expected ':'");
  EXPECT_PARSE_ERROR("[1, 2", "expected ',' or ']'");
  EXPECT_PARSE_ERROR("[1, 2,]", "unexpected character ']'");
  EXPECT_PARSE_ERROR("{\"a\": 1,}", "expected a string key");
  EXPECT_PARSE_ERROR("{\"a\" : 1 \"b\": 2}", "expected ',' or '}'");
  EXPECT_PARSE_ERROR("{'a': 1}", "expected a string key");
  EXPECT_PARSE_ERROR("{\"a\": 1, \"a\": 2}", "duplicate key \"a\"");
  EXPECT_PARSE_ERROR("[1] [2]", "unexpected characters after the JSON value");
  EXPECT_PARSE_ERROR("1 x", "unexpected characters after");
  EXPECT_PARSE_ERROR("tru", "invalid literal");
  EXPECT_PARSE_ERROR("nul", "invalid literal");
  EXPECT_PARSE_ERROR("NaN", "unexpected character 'N'");
  EXPECT_PARSE_ERROR("Infinity", "unexpected character 'I'");
  EXPECT_PARSE_ERROR("-Infinity", "invalid number");
  EXPECT_PARSE_ERROR("01", "unexpected characters after");
  EXPECT_PARSE_ERROR("1.", "digits expected after '.'");
  EXPECT_PARSE_ERROR(".5", "unexpected character '.'");
  EXPECT_PARSE_ERROR("1e", "digits expected in exponent");
  EXPECT_PARSE_ERROR("+1", "unexpected character '+'");
  EXPECT_PARSE_ERROR("1e999", "number out of range");
  EXPECT_PARSE_ERROR("\"abc", "unterminated string");
  EXPECT_PARSE_ERROR("\"a\nb\"", "control character");
  EXPECT_PARSE_ERROR("\"\\x\"", "invalid escape");
  EXPECT_PARSE_ERROR("\"\\u12zz\"", "invalid \\u escape");
  EXPECT_PARSE_ERROR("\"\\u12", "truncated \\u escape");
  EXPECT_PARSE_ERROR("\"\\ud800\"", "unpaired high surrogate");
  EXPECT_PARSE_ERROR("\"\\ud800\\u0041\"", "invalid low surrogate");
  EXPECT_PARSE_ERROR("\"\\udc00\"", "unpaired low surrogate");
  EXPECT_PARSE_ERROR("\"\xff\"", "invalid UTF-8");
  EXPECT_PARSE_ERROR("\"\xc0\xaf\"", "invalid UTF-8");          // overlong '/'
  EXPECT_PARSE_ERROR("\"\xed\xa0\x80\"", "invalid UTF-8");      // encoded surrogate
  EXPECT_PARSE_ERROR("\"\xf4\x90\x80\x80\"", "invalid UTF-8");  // above U+10FFFF
  EXPECT_PARSE_ERROR("\"\xe4\xb8\"", "invalid UTF-8");          // truncated sequence
  EXPECT_PARSE_ERROR("// comment\n1", "unexpected character '/'");
}

TEST(depth_is_limited) {
  const size_t depth = static_cast<size_t>(limits().max_json_depth);
  std::string ok(depth, '['), deep(depth + 1, '[');
  ok += std::string(depth, ']');
  deep += std::string(depth + 1, ']');
  CHECK(Json::parse(ok).is_array());
  EXPECT_PARSE_ERROR(deep, "nesting deeper than max_json_depth = 64");
  // A hostile document far deeper than the limit fails fast instead of overflowing the stack.
  EXPECT_PARSE_ERROR(std::string(1000000, '['), "nesting deeper than max_json_depth = 64");
  std::string objs;
  for (size_t i = 0; i <= depth; ++i) objs += "{\"a\":";
  EXPECT_PARSE_ERROR(objs + "1" + std::string(depth + 1, '}'),
                     "nesting deeper than max_json_depth = 64");
}

TEST(depth_follows_the_limits) {
  const Limits saved = limits();
  Limits l = saved;
  l.max_json_depth = 3;
  set_limits(l);
  CHECK(Json::parse("[[[1]]]").is_array());
  EXPECT_PARSE_ERROR("[[[[1]]]]", "nesting deeper than max_json_depth = 3");
  set_limits(saved);
  l.max_json_depth = Limits::kJsonDepthCap + 1;  // deeper would risk the stack: refused
  bool refused = false;
  try {
    set_limits(l);
  } catch (const Error& e) {
    refused = e.kind() == ErrorKind::Value;
  }
  CHECK(refused);
  CHECK(limits().max_json_depth == saved.max_json_depth);
}

TEST(every_truncation_of_a_document_throws) {
  const std::string text =
      R"({"a": [1, -2.5e3, "x\u00e9\ud83d\ude00", true, null], "b": {"c": false}})";
  CHECK(Json::parse(text).size() == 2);
  for (size_t n = 0; n < text.size(); ++n) CHECK_THROWS(Json::parse(text.substr(0, n)));
}

PYDECONV_TEST_MAIN()
