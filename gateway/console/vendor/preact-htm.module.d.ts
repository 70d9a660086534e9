// Types of the parts of preact-htm.module.js the console uses (hand-written: the module
// ships none). Kept beside it so that `tsc --checkJs` checks the console against them.
export type VNode = any;
export declare function html(strings: TemplateStringsArray, ...values: any[]): VNode;
export declare function render(vnode: VNode, parent: Element): void;
export declare function useState<T>(initial: T | (() => T)): [T, (next: T | ((previous: T) => T)) => void];
export declare function useEffect(effect: () => void | (() => unknown), deps?: readonly unknown[]): void;
export declare function useLayoutEffect(effect: () => void | (() => unknown), deps?: readonly unknown[]): void;
export declare function useRef<T>(initial: T): { current: T };
export declare function useMemo<T>(make: () => T, deps: readonly unknown[]): T;
export declare function useCallback<T extends (...args: any[]) => any>(fn: T, deps: readonly unknown[]): T;
export declare class Component<P = any, S = any> {
  constructor(props?: P);
  props: P;
  state: S;
  setState(state: Partial<S>): void;
  shouldComponentUpdate?(nextProps: P, nextState: S): boolean;
  render(): VNode;
}
