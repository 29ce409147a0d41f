// A tiny test harness for the C++ tests (no external framework needed).
// Each test file defines TEST(name) blocks and ends with PYDECONV_TEST_MAIN().
#pragma once
#include <cmath>
#include <cstdio>
#include <exception>
#include <functional>
#include <string>
#include <vector>

namespace check {

struct Case {
  const char* name;
  std::function<void()> fn;
};

inline std::vector<Case>& registry() {
  static std::vector<Case> cases;
  return cases;
}

struct Register {
  Register(const char* name, std::function<void()> fn) {
    registry().push_back({name, std::move(fn)});
  }
};

struct Failure : std::exception {
  std::string msg;
  explicit Failure(std::string m) : msg(std::move(m)) {}
  const char* what() const noexcept override { return msg.c_str(); }
};

[[noreturn]] inline void fail_at(const char* file, int line, const std::string& what) {
  throw Failure(std::string(file) + ":" + std::to_string(line) + ": " + what);
}

inline int run_all() {
  int failed = 0;
  for (auto& c : registry()) {
    try {
      c.fn();
      std::printf("PASS %s\n", c.name);
    } catch (const std::exception& e) {
      ++failed;
      std::printf("FAIL %s: %s\n", c.name, e.what());
    }
  }
  std::printf("%d passed, %d failed\n", static_cast<int>(registry().size()) - failed, failed);
  return failed == 0 ? 0 : 1;
}

}  // namespace check

#define CHECK_CAT2(a, b) a##b
#define CHECK_CAT(a, b) CHECK_CAT2(a, b)
#define TEST(name)                                           \
  static void name();                                        \
  static check::Register CHECK_CAT(reg_, name)(#name, name); \
  static void name()
#define CHECK(cond)                                                      \
  do {                                                                   \
    if (!(cond)) check::fail_at(__FILE__, __LINE__, "CHECK(" #cond ")"); \
  } while (0)
#define CHECK_NEAR(a, b, tol)                                                                 \
  do {                                                                                        \
    double va_ = (a), vb_ = (b);                                                              \
    if (!(std::fabs(va_ - vb_) <= (tol)))                                                     \
      check::fail_at(                                                                         \
          __FILE__, __LINE__,                                                                 \
          std::string(#a " = ") + std::to_string(va_) + ", " #b " = " + std::to_string(vb_)); \
  } while (0)
#define CHECK_THROWS(stmt)                                                       \
  do {                                                                           \
    bool threw_ = false;                                                         \
    try {                                                                        \
      stmt;                                                                      \
    } catch (const std::exception&) {                                            \
      threw_ = true;                                                             \
    }                                                                            \
    if (!threw_) check::fail_at(__FILE__, __LINE__, "no exception from " #stmt); \
  } while (0)
#define PYDECONV_TEST_MAIN() \
  int main() { return check::run_all(); }
