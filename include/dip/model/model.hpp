// dip::multimodal_model: modules joined in a DAG held in a Boost.Graph adjacency_list.
//
// An edge u -> v means module v consumes u's output (a vision encoder feeds its projector, the
// projector feeds the LLM; for text-to-video the LLM feeds the diffusion decoder). A model is
// built by `model_builder`, which checks everything once, so a `multimodal_model` that exists
// is always valid: unique non-empty names, no dangling edge, no cycle, one connected graph.
#pragma once

#include <algorithm>
#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/graph/adjacency_list.hpp>
#include <boost/graph/connected_components.hpp>
#include <boost/graph/depth_first_search.hpp>
#include <boost/graph/topological_sort.hpp>

#include "dip/core/error.hpp"
#include "dip/core/ids.hpp"
#include "dip/model/module.hpp"

namespace dip {

class multimodal_model {
 public:
  // Vertex i is module i (vecS storage makes the vertex descriptor the index).
  using graph_type = boost::adjacency_list<boost::vecS, boost::vecS, boost::bidirectionalS>;

  const std::string& name() const noexcept { return name_; }
  std::span<const module_spec> modules() const noexcept { return modules_; }
  std::size_t module_count() const noexcept { return modules_.size(); }
  const module_spec& module(module_id id) const { return modules_.at(id.index()); }
  const graph_type& graph() const noexcept { return graph_; }

  // Modules in an order where every module comes after all modules that feed it.
  std::span<const module_id> topological_order() const noexcept { return order_; }

  std::optional<module_id> find(std::string_view module_name) const {
    for (const module_spec& m : modules_) {
      if (m.name == module_name) return m.id;
    }
    return std::nullopt;
  }

  // Like find, but an unknown name is a dip::error listing the modules that exist.
  module_id at(std::string_view module_name) const {
    if (auto id = find(module_name)) return *id;
    std::string known;
    for (const module_spec& m : modules_) known += (known.empty() ? "'" : ", '") + m.name + "'";
    throw error(errc::not_found, "model '" + name_ + "'",
                "no module named '" + std::string(module_name) + "' (modules: " + known + ")");
  }

  std::vector<module_id> inputs_of(module_id id) const {
    std::vector<module_id> result;
    for (auto [it, end] = boost::in_edges(id.index(), graph_); it != end; ++it) {
      result.push_back(module_id::from_index(boost::source(*it, graph_)));
    }
    std::sort(result.begin(), result.end());
    return result;
  }

  std::vector<module_id> outputs_of(module_id id) const {
    std::vector<module_id> result;
    for (auto [it, end] = boost::out_edges(id.index(), graph_); it != end; ++it) {
      result.push_back(module_id::from_index(boost::target(*it, graph_)));
    }
    std::sort(result.begin(), result.end());
    return result;
  }

  std::int64_t parameter_count() const {
    std::int64_t total = 0;
    for (const module_spec& m : modules_) total += dip::parameter_count(m);
    return total;
  }

 private:
  friend class model_builder;
  std::string name_;
  std::vector<module_spec> modules_;
  graph_type graph_;
  std::vector<module_id> order_;
};

// Collects modules and edges by name, then `build()` validates and freezes them.
class model_builder {
 public:
  explicit model_builder(std::string model_name) : name_(std::move(model_name)) {}

  // Adds a module; its id is its position. Names must be unique (checked in build()).
  model_builder& add(module_spec module) {
    modules_.push_back(std::move(module));
    return *this;
  }

  // `to` consumes the output of `from`. Names are resolved in build(), so order does not matter.
  model_builder& connect(std::string from, std::string to) {
    edges_.emplace_back(std::move(from), std::move(to));
    return *this;
  }

  // Throws dip::error (errc::invalid_argument or errc::graph_error) naming the offending
  // modules: an empty model, a duplicate name, a bad module, an edge to an unknown module, a
  // self-loop or duplicate edge, a cycle, or modules not connected to the rest.
  // The builder is left as it was, so one builder can stamp out variants.
  multimodal_model build() const {
    const std::string where = "model '" + name_ + "'";
    require(!name_.empty(), errc::invalid_argument, "model", "name must not be empty");
    require(!modules_.empty(), errc::invalid_argument, where, "has no modules");

    multimodal_model model;
    model.name_ = name_;
    model.modules_ = modules_;
    for (std::size_t i = 0; i < model.modules_.size(); ++i) {
      module_spec& m = model.modules_[i];
      validate(m);
      m.id = module_id::from_index(i);
      for (std::size_t j = 0; j < i; ++j) {
        require(model.modules_[j].name != m.name, errc::invalid_argument, where,
                "two modules are named '" + m.name + "'");
      }
    }

    model.graph_ = multimodal_model::graph_type(model.modules_.size());
    for (const auto& [from, to] : edges_) {
      const module_id u = resolve(model, from, to);
      const module_id v = resolve(model, to, from);
      require(u != v, errc::graph_error, where, "module '" + from + "' feeds itself");
      require(!boost::edge(u.index(), v.index(), model.graph_).second, errc::graph_error, where,
              std::string("edge '").append(from).append("' -> '").append(to).append("' is given twice"));
      boost::add_edge(u.index(), v.index(), model.graph_);
    }

    reject_cycles(model, where);
    reject_unconnected(model, where);

    std::vector<std::size_t> reversed;
    boost::topological_sort(model.graph_, std::back_inserter(reversed));
    for (auto it = reversed.rbegin(); it != reversed.rend(); ++it) {
      model.order_.push_back(module_id::from_index(*it));
    }
    return model;
  }

 private:
  static module_id resolve(const multimodal_model& model, const std::string& name, const std::string& other_end) {
    if (auto id = model.find(name)) return *id;
    throw error(errc::graph_error, "model '" + model.name_ + "'",
                "edge between '" + name + "' and '" + other_end + "' names unknown module '" + name + "'");
  }

  // Records the first back edge and the DFS tree, so the cycle can be spelled out by name.
  struct cycle_finder : boost::default_dfs_visitor {
    std::vector<std::size_t>* parent = nullptr;
    std::optional<std::pair<std::size_t, std::size_t>>* first_back_edge = nullptr;
    template <class Edge, class Graph>
    void tree_edge(Edge e, const Graph& g) const {
      (*parent)[boost::target(e, g)] = boost::source(e, g);
    }
    template <class Edge, class Graph>
    void back_edge(Edge e, const Graph& g) const {
      if (!*first_back_edge) *first_back_edge = std::pair{boost::source(e, g), boost::target(e, g)};
    }
  };

  static void reject_cycles(const multimodal_model& model, const std::string& where) {
    const std::size_t n = model.modules_.size();
    std::vector<std::size_t> parent(n, n);
    std::optional<std::pair<std::size_t, std::size_t>> back;
    cycle_finder visitor;
    visitor.parent = &parent;
    visitor.first_back_edge = &back;
    boost::depth_first_search(model.graph_, boost::visitor(visitor));
    if (!back) return;
    // back = (u, v) with v an ancestor of u: the cycle is v -> ... -> u -> v.
    std::vector<std::size_t> path{back->first};
    for (std::size_t x = back->first; x != back->second;) {
      x = parent[x];
      path.push_back(x);
    }
    std::string cycle;
    for (auto it = path.rbegin(); it != path.rend(); ++it) cycle += "'" + model.modules_[*it].name + "' -> ";
    cycle += "'" + model.modules_[back->second].name + "'";
    throw error(errc::graph_error, where, "module graph has a cycle: " + cycle);
  }

  static void reject_unconnected(const multimodal_model& model, const std::string& where) {
    const std::size_t n = model.modules_.size();
    if (n < 2) return;
    using undirected = boost::adjacency_list<boost::vecS, boost::vecS, boost::undirectedS>;
    undirected g(n);
    for (auto [it, end] = boost::edges(model.graph_); it != end; ++it) {
      boost::add_edge(boost::source(*it, model.graph_), boost::target(*it, model.graph_), g);
    }
    std::vector<int> component(n);
    const int count = boost::connected_components(g, component.data());
    if (count == 1) return;
    // Name every module outside the component of the largest module set.
    std::vector<std::size_t> size(static_cast<std::size_t>(count), 0);
    for (int c : component) ++size[static_cast<std::size_t>(c)];
    const int main = static_cast<int>(std::max_element(size.begin(), size.end()) - size.begin());
    std::string outside;
    for (std::size_t i = 0; i < n; ++i) {
      if (component[i] != main) outside += (outside.empty() ? "'" : ", '") + model.modules_[i].name + "'";
    }
    throw error(errc::graph_error, where,
                "modules not connected to the rest of the model: " + outside +
                    " (give them \"inputs\" or make them feed another module)");
  }

  std::string name_;
  std::vector<module_spec> modules_;
  std::vector<std::pair<std::string, std::string>> edges_;
};

}  // namespace dip
