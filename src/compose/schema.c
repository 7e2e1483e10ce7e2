/*
 * compose/schema — the JSON Schema subset a pipeline's action object is validated against
 * (comp_int.h lists the keywords). A keyword outside it is refused when the config loads,
 * never ignored, so that a schema never passes something its author meant to refuse.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "compose/comp_int.h"

static const char *const known[] = {"type", "properties", "required", "additionalProperties", "enum", "const",
                                    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength",
                                    "maxLength", "items", "minItems", "maxItems", "title", "description", NULL};
static const char *const types[] = {"object", "array", "string", "number", "integer", "boolean", "null", NULL};

static bool in(const char *s, const char *const *set) {
    for (; *set; set++)
        if (!strcmp(s, *set)) return true;
    return false;
}

static int check_at(const json_t *s, const char *path, int depth, char *err, size_t n) {
    if (depth > 16) return snprintf(err, n, "schema %s: nested deeper than 16", path), -1;
    if (!json_is_object(s)) return snprintf(err, n, "schema %s: expected an object", path), -1;
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)s, k, v) {
        if (!in(k, known))
            return snprintf(err, n, "schema %s: keyword '%.60s' is not supported (supported: type, properties, "
                            "required, additionalProperties, enum, const, minimum, maximum, exclusiveMinimum, "
                            "exclusiveMaximum, minLength, maxLength, items, minItems, maxItems)", path, k), -1;
    }
    const json_t *t = json_object_get(s, "type");
    if (t && !(json_is_string(t) && in(json_string_value(t), types)))
        return snprintf(err, n, "schema %s: type must be one of object, array, string, number, integer, boolean, "
                        "null", path), -1;
    const json_t *props = json_object_get(s, "properties");
    if (props) {
        if (!json_is_object(props)) return snprintf(err, n, "schema %s: properties must be an object", path), -1;
        json_object_foreach((json_t *)props, k, v) {
            char sub[256];
            snprintf(sub, sizeof sub, "%s.%.60s", path, k);
            if (check_at(v, sub, depth + 1, err, n)) return -1;
        }
    }
    const json_t *items = json_object_get(s, "items");
    if (items) {
        char sub[256];
        snprintf(sub, sizeof sub, "%s[]", path);
        if (check_at(items, sub, depth + 1, err, n)) return -1;
    }
    const json_t *req = json_object_get(s, "required");
    if (req) {
        if (!json_is_array(req)) return snprintf(err, n, "schema %s: required must be a list", path), -1;
        for (size_t i = 0; i < json_array_size(req); i++)
            if (!json_is_string(json_array_get(req, i)))
                return snprintf(err, n, "schema %s: required must list names", path), -1;
    }
    const json_t *ap = json_object_get(s, "additionalProperties");
    if (ap && !json_is_boolean(ap))
        return snprintf(err, n, "schema %s: additionalProperties must be true or false", path), -1;
    if (json_object_get(s, "enum") && !json_is_array(json_object_get(s, "enum")))
        return snprintf(err, n, "schema %s: enum must be a list", path), -1;
    static const char *const nums[] = {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength",
                                       "maxLength", "minItems", "maxItems"};
    for (int i = 0; i < 8; i++) {
        const json_t *x = json_object_get(s, nums[i]);
        if (x && !json_is_number(x)) return snprintf(err, n, "schema %s: %s must be a number", path, nums[i]), -1;
    }
    return 0;
}

int cschema_check(const json_t *schema, char *err, size_t errn) { return check_at(schema, "$", 0, err, errn); }

static bool type_ok(const char *t, const json_t *v) {
    if (!strcmp(t, "object")) return json_is_object(v);
    if (!strcmp(t, "array")) return json_is_array(v);
    if (!strcmp(t, "string")) return json_is_string(v);
    if (!strcmp(t, "number")) return json_is_number(v);
    if (!strcmp(t, "integer"))
        return json_is_integer(v) || (json_is_real(v) && floor(json_real_value(v)) == json_real_value(v));
    if (!strcmp(t, "boolean")) return json_is_boolean(v);
    return json_is_null(v);
}

/* Characters (code points) of UTF-8 text: the bytes that do not continue a sequence. */
static size_t chars_of(const char *s, size_t n) {
    size_t c = 0;
    for (size_t i = 0; i < n; i++) c += ((unsigned char)s[i] & 0xC0) != 0x80;
    return c;
}

static double num(const json_t *s, const char *k) { return json_number_value(json_object_get(s, k)); }

/* type: one name, or (a client's schema: tools' parameters) a list of names, any of which will do.
 * Anything else says nothing. */
static bool types_ok(const json_t *t, const json_t *v) {
    if (json_is_string(t)) return type_ok(json_string_value(t), v);
    if (!json_is_array(t)) return true;
    bool any = false;
    for (size_t i = 0; i < json_array_size(t); i++) {
        const char *s = json_string_value(json_array_get(t, i));
        if (s && type_ok(s, v)) return true;
        any |= s != NULL;
    }
    return !any;
}

static int validate_at(const json_t *s, const json_t *v, const char *path, char *err, size_t n) {
    const json_t *t = json_object_get(s, "type");
    if (t && !types_ok(t, v))
        return snprintf(err, n, "%s: expected %s", path, json_is_string(t) ? json_string_value(t) : "one of its types"), -1;
    const json_t *en = json_object_get(s, "enum");
    if (en) {
        bool hit = false;
        for (size_t i = 0; !hit && i < json_array_size(en); i++) hit = json_equal(json_array_get(en, i), (json_t *)v);
        if (!hit) return snprintf(err, n, "%s: not one of the allowed values", path), -1;
    }
    const json_t *cn = json_object_get(s, "const");
    if (cn && !json_equal(cn, (json_t *)v)) return snprintf(err, n, "%s: not the required value", path), -1;
    if (json_is_number(v)) {
        double x = json_number_value(v);
        if (json_is_number(json_object_get(s, "minimum")) && x < num(s, "minimum"))
            return snprintf(err, n, "%s: %g is below the minimum %g", path, x, num(s, "minimum")), -1;
        if (json_is_number(json_object_get(s, "maximum")) && x > num(s, "maximum"))
            return snprintf(err, n, "%s: %g is above the maximum %g", path, x, num(s, "maximum")), -1;
        if (json_is_number(json_object_get(s, "exclusiveMinimum")) && x <= num(s, "exclusiveMinimum"))
            return snprintf(err, n, "%s: %g is not above %g", path, x, num(s, "exclusiveMinimum")), -1;
        if (json_is_number(json_object_get(s, "exclusiveMaximum")) && x >= num(s, "exclusiveMaximum"))
            return snprintf(err, n, "%s: %g is not below %g", path, x, num(s, "exclusiveMaximum")), -1;
    }
    if (json_is_string(v)) {
        size_t chars = chars_of(json_string_value(v), json_string_length(v));
        if (json_is_number(json_object_get(s, "minLength")) && (double)chars < num(s, "minLength"))
            return snprintf(err, n, "%s: shorter than %g characters", path, num(s, "minLength")), -1;
        if (json_is_number(json_object_get(s, "maxLength")) && (double)chars > num(s, "maxLength"))
            return snprintf(err, n, "%s: longer than %g characters", path, num(s, "maxLength")), -1;
    }
    if (json_is_array(v)) {
        double len = (double)json_array_size(v);
        if (json_is_number(json_object_get(s, "minItems")) && len < num(s, "minItems"))
            return snprintf(err, n, "%s: fewer than %g items", path, num(s, "minItems")), -1;
        if (json_is_number(json_object_get(s, "maxItems")) && len > num(s, "maxItems"))
            return snprintf(err, n, "%s: more than %g items", path, num(s, "maxItems")), -1;
        const json_t *items = json_object_get(s, "items");
        for (size_t i = 0; items && i < json_array_size(v); i++) {
            char sub[256];
            snprintf(sub, sizeof sub, "%s[%zu]", path, i);
            if (validate_at(items, json_array_get(v, i), sub, err, n)) return -1;
        }
    }
    if (json_is_object(v)) {
        const json_t *req = json_object_get(s, "required"), *props = json_object_get(s, "properties");
        for (size_t i = 0; i < json_array_size(req); i++) {
            const char *k = json_string_value(json_array_get(req, i));
            if (k && !json_object_get(v, k)) return snprintf(err, n, "%s: missing required %.60s", path, k), -1;
        }
        const char *k;
        const json_t *x;
        json_object_foreach((json_t *)v, k, x) {
            char sub[256];
            snprintf(sub, sizeof sub, "%s.%.60s", path, k);
            const json_t *ps = json_object_get(props, k);
            if (ps) {
                if (validate_at(ps, x, sub, err, n)) return -1;
            } else if (json_is_false(json_object_get(s, "additionalProperties"))) {
                return snprintf(err, n, "%s: not an allowed property", sub), -1;
            }
        }
    }
    return 0;
}

int cschema_validate(const json_t *schema, const json_t *v, char *err, size_t errn) {
    return validate_at(schema, v, "$", err, errn);
}

const char *cschema_prop_type(const json_t *schema, const char *key) {
    return json_string_value(json_object_get(json_object_get(json_object_get(schema, "properties"), key), "type"));
}
