/* SPDX-License-Identifier: Apache-2.0
 *
 * This file implements the fast reader of body_scan_internal.h on simdjson's On Demand parser:
 * every value of the body is visited (so simdjson validates all of it: structure, every
 * number and escape, and, in its first pass, the UTF-8 of the whole text) while the members
 * the gateway reads are taken, with the positions the permitted rewrites need (SPEC §4).
 * Anything it does not accept, or that breaks a rule, is left to the exact reader, which
 * decides it and words the refusal: this reader never refuses a body itself. About 2.5 times
 * faster than yajl on a typical chat body (docs/decisions.md, Dependencies).
 */
#include "json/body_scan_internal.h"

#include <cstring>
#include <memory>
#include <new>

#include <simdjson.h>

namespace od = simdjson::ondemand;

namespace
{

/* A thread keeps its parser and padded copy sized for the largest body it has read up to this
 * size: simdjson's parser holds about five bytes per byte of capacity (structural indexes,
 * unescaped strings), so ~1.5 MiB per event loop at most. A larger body has its own, released
 * after. Chat bodies are a few KiB; capacities grow by doubling from the smallest. */
constexpr size_t KEPT_CAPACITY = 256 << 10;
constexpr size_t MIN_CAPACITY = 4 << 10;

struct reader {
    od::parser parser;
    std::unique_ptr<char[]> padded; /* the body, then simdjson's read-ahead padding */
    size_t padded_cap = 0;          /* bytes of body the padded copy holds */
};

thread_local std::unique_ptr<reader> thread_reader; /* made on a thread's first body, freed at its exit */

/* The capacity to hold a body of len bytes: doubled from MIN_CAPACITY while kept, exact beyond. */
size_t capacity_for(size_t len)
{
    if (len > KEPT_CAPACITY)
        return len;
    size_t cap = MIN_CAPACITY;
    while (cap < len)
        cap *= 2;
    return cap;
}

/* Makes r able to read a body of len bytes; false if memory runs out. */
bool reserve(reader &r, size_t len)
{
    if (r.padded_cap >= len && r.parser.capacity() >= len)
        return true;
    size_t cap = capacity_for(len);
    r.padded.reset(new (std::nothrow) char[cap + simdjson::SIMDJSON_PADDING]);
    r.padded_cap = r.padded ? cap : 0;
    return r.padded && r.parser.allocate(cap) == simdjson::SUCCESS;
}

struct walk {
    const char *base; /* the padded copy: offsets into it are offsets into the body */
    size_t len;
    kg_body_info_t *out;
};

size_t offset_of(const walk &w, std::string_view token)
{
    return static_cast<size_t>(token.data() - w.base);
}

/* A scalar's token as sent: simdjson's raw token runs on to the next structural character. */
std::string_view trimmed(std::string_view token)
{
    size_t n = token.size();
    while (n > 0 && kg__body_is_space(token[n - 1]))
        n--;
    return token.substr(0, n);
}

/* Visits v and everything in it, validating as it goes; `depth` counts the containers v is in. */
bool visit(od::value v, int depth)
{
    od::json_type type;
    if (v.type().get(type))
        return false;
    switch (type) {
    case od::json_type::object: {
        od::object o;
        if (depth + 1 > KG_BODY_MAX_DEPTH || v.get_object().get(o))
            return false;
        for (auto field : o) {
            std::string_view name;
            od::value x;
            if (field.unescaped_key().get(name) || field.value().get(x) || !visit(x, depth + 1))
                return false;
        }
        return true;
    }
    case od::json_type::array: {
        od::array a;
        if (depth + 1 > KG_BODY_MAX_DEPTH || v.get_array().get(a))
            return false;
        for (auto element : a) {
            od::value x;
            if (element.get(x) || !visit(x, depth + 1))
                return false;
        }
        return true;
    }
    case od::json_type::string: {
        std::string_view s;
        return !v.get_string().get(s);
    }
    case od::json_type::number: {
        od::number n;
        return !v.get_number().get(n);
    }
    case od::json_type::boolean: {
        bool b;
        return !v.get_bool().get(b);
    }
    case od::json_type::null: {
        bool is_null;
        return !v.is_null().get(is_null) && is_null;
    }
    }
    return false;
}

/* "input": a string is one input, a list of token ids one, any other list one per element. */
bool read_input(walk &w, od::value v, od::json_type type)
{
    if (type == od::json_type::string) {
        w.out->n_inputs = 1;
        return visit(v, 1);
    }
    if (type != od::json_type::array)
        return visit(v, 1);
    od::array a;
    if (v.get_array().get(a))
        return false;
    size_t n = 0;
    bool all_numbers = true;
    for (auto element : a) {
        od::value x;
        od::json_type t;
        if (element.get(x) || x.type().get(t))
            return false;
        n++;
        all_numbers = all_numbers && t == od::json_type::number;
        if (!visit(x, 2))
            return false;
    }
    w.out->n_inputs = all_numbers && n > 0 ? 1 : n;
    return true;
}

/* "stream_options": only its own "include_usage", when a boolean, counts. */
bool read_stream_options(walk &w, od::value v, od::json_type type)
{
    w.out->has_stream_options = true;
    if (type != od::json_type::object)
        return visit(v, 1);
    od::object o;
    if (v.get_object().get(o))
        return false;
    for (auto field : o) {
        std::string_view name;
        od::value x;
        od::json_type t;
        if (field.unescaped_key().get(name) || field.value().get(x) || x.type().get(t))
            return false;
        if (name == "include_usage" && t == od::json_type::boolean) {
            bool b;
            if (x.get_bool().get(b))
                return false;
            w.out->include_usage = b;
        } else if (!visit(x, 2)) {
            return false;
        }
    }
    return true;
}

/* One top-level member's value. */
bool read_member(walk &w, kg_body_key_t key, od::value v)
{
    od::json_type type;
    if (v.type().get(type))
        return false;
    switch (key) {
    case KG_BODY_K_MODEL:
        w.out->has_model = true;
        if (type == od::json_type::string) {
            std::string_view token = trimmed(v.raw_json_token());
            std::string_view s;
            if (v.get_string().get(s))
                return false;
            size_t start = offset_of(w, token);
            kg__body_model(w.out, s.data(), s.size(), start, start + token.size());
            return true;
        }
        break;
    case KG_BODY_K_STREAM:
        if (type == od::json_type::boolean) {
            bool b;
            if (v.get_bool().get(b))
                return false;
            w.out->stream = b;
            return true;
        }
        break;
    case KG_BODY_K_STREAM_OPTIONS: return read_stream_options(w, v, type);
    case KG_BODY_K_INPUT: return read_input(w, v, type);
    case KG_BODY_K_ENCODING_FORMAT:
        if (type == od::json_type::string) {
            std::string_view s;
            if (v.get_string().get(s))
                return false;
            w.out->encoding_base64 = s == "base64";
            return true;
        }
        break;
    case KG_BODY_K_DIMENSIONS:
    case KG_BODY_K_MAX_TOKENS:
    case KG_BODY_K_CHOICES:
        if (type == od::json_type::number) {
            std::string_view token = trimmed(v.raw_json_token());
            od::number n;
            if (v.get_number().get(n))
                return false;
            kg__body_number(w.out, key, token.data(), token.size());
            return true;
        }
        break;
    case KG_BODY_K_MESSAGES:
        if (type == od::json_type::array)
            kg__body_messages(w.out, w.base, w.len, offset_of(w, v.raw_json_token()) + 1);
        break;
    case KG_BODY_K_OTHER: break;
    }
    return visit(v, 1);
}

bool read_body(walk &w, od::document &doc, const kg_body_alloc_t *alloc)
{
    od::object top;
    if (doc.get_object().get(top))
        return false;
    kg_body_names_t names = {};
    for (auto field : top) {
        std::string_view name;
        od::value v;
        if (field.unescaped_key().get(name) || field.value().get(v))
            return false;
        if (kg__body_names_add(&names, alloc, name.data(), name.size()) != KG_BODY_NAME_NEW)
            return false;
        if (!read_member(w, kg__body_classify(name.data(), name.size()), v))
            return false;
    }
    return doc.current_location().error() == simdjson::OUT_OF_BOUNDS; /* nothing after the object */
}

} // namespace

bool kg__body_scan_fast(const char *body, size_t len, const kg_body_alloc_t *alloc, kg_body_info_t *out)
{
    /* A body that does not start as an object is left to the exact reader, which refuses it. */
    size_t first = kg__body_first(body, len);
    if (first == len || body[first] != '{')
        return false;
    if (!thread_reader)
        thread_reader.reset(new (std::nothrow) reader());
    if (!thread_reader || !reserve(*thread_reader, len))
        return false;
    reader &r = *thread_reader;
    /* simdjson reads up to SIMDJSON_PADDING bytes past the end, which nothing guarantees after a
     * request body (libh2o's buffer, or a request-pool copy): hence the copy, far cheaper than the parse.
     * Zeros there cannot continue a token of the body. */
    std::memcpy(r.padded.get(), body, len);
    std::memset(r.padded.get() + len, 0, simdjson::SIMDJSON_PADDING);
    std::memset(out, 0, sizeof(*out));
    bool read;
    {
        walk w = {r.padded.get(), len, out};
        od::document doc;
        read = !r.parser.iterate(r.padded.get(), len, r.padded_cap + simdjson::SIMDJSON_PADDING).get(doc) &&
               read_body(w, doc, alloc);
    }
    if (len > KEPT_CAPACITY) { /* a rare giant: give its memory back */
        r.parser = od::parser();
        r.padded.reset();
        r.padded_cap = 0;
    }
    return read;
}
